# The two commands: `make demo` and `make test`. Both prepare what is missing.
.PHONY: setup demo test model

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

test: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo nextest run --workspace --no-fail-fast

# Retrain and re-export the reference model (needs PyTorch; long on a CPU).
model: setup
	python3 -m pip install --quiet -r models/requirements-train.txt
	cargo build -p appliance
	target/debug/appliance synth --out models/.work/train --count 8000 --seed 1000 --standards-per-part 2
	cd models && python3 -m toolchain.train --data .work/train --out .work/run1 --steps 2500 --batch 24 --lr 1.5e-3
	cd models && python3 -m toolchain.export --run .work/run1 --out reference

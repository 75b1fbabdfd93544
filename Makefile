# The two commands: `make demo` and `make test`. Both prepare what is missing.
.PHONY: setup demo test install model finetune-demo

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

test: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo nextest run --workspace --no-fail-fast
	cargo build --quiet -p appliance
	python3 -m unittest discover -s models/tests
	scripts/check-fresh-demo.sh
	scripts/check-deploy.sh

# Install as a systemd service (README, "Deploying with systemd").
install:
	scripts/install.sh

# Retrain the reference model from scratch. Measured on one CPU thread:
# backbone maps of the 12,000 training images 34 min, then 1.4 s per step
# (6,000 steps): about 3 hours; more threads (THREADS) or a GPU shorten it.
model: setup
	scripts/train-reference.sh

# Adapt the reference model to the synthetic "new line" (burr, porosity on
# powder coat): the fine-tuning demonstration, a few minutes on 2 CPU cores.
finetune-demo: setup
	cargo build --quiet -p appliance
	target/debug/appliance synth-plant --out models/.work/plant --heldout models/.work/plant-heldout --per-class 50 --seed 77
	cd models && python3 -m toolchain.finetune --base reference --images .work/plant \
	  --standard .work/plant/standard.txt --eval .work/plant-heldout --out .work/plant-model

//! The model package is verified before anything runs it: a corrupt or
//! missing file is refused with an error that names it.

use std::path::{Path, PathBuf};

use firmware_config::Precision;
use fusion::{ModelPackage, PackageError};

fn reference() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/reference")
}

/// Flips one bit of `file`'s middle byte.
fn corrupt(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

fn copy_package() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(reference()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn reference_package_verifies() {
    let pkg = ModelPackage::open(&reference(), Precision::Fp32).expect("shipped package is intact");
    assert_eq!(pkg.manifest.output.format, "verdict-v1");
    assert_eq!(pkg.sha256.len(), 64);
}

#[test]
fn a_flipped_byte_is_refused_naming_the_file() {
    let dir = copy_package();
    corrupt(&dir.path().join("encoder_model.onnx"));
    let err = ModelPackage::open(dir.path(), Precision::Fp32).unwrap_err();
    assert!(matches!(err, PackageError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("encoder_model.onnx"), "{err}");
}

#[test]
fn a_corrupt_int8_twin_is_refused_while_fp32_is_selected() {
    let dir = copy_package();
    let graph = dir.path().join("decoder_model.int8.onnx");
    corrupt(&graph);
    let err = ModelPackage::open(dir.path(), Precision::Fp32).unwrap_err();
    assert!(matches!(err, PackageError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("decoder_model.int8.onnx"), "{err}");
    // A package stripped of the precision it does not run still opens.
    std::fs::remove_file(&graph).unwrap();
    ModelPackage::open(dir.path(), Precision::Fp32).expect("FP32 without the INT8 twins");
    let err = ModelPackage::open(dir.path(), Precision::Int8).unwrap_err();
    assert!(err.to_string().contains("decoder_model.int8.onnx"), "{err}");
}

#[test]
fn a_missing_graph_is_refused() {
    let dir = copy_package();
    std::fs::remove_file(dir.path().join("decoder_with_past_model.onnx")).unwrap();
    let err = ModelPackage::open(dir.path(), Precision::Fp32).unwrap_err();
    assert!(
        err.to_string().contains("decoder_with_past_model.onnx"),
        "{err}"
    );
}

#[test]
fn int8_package_verifies_and_a_missing_int8_graph_is_refused() {
    let pkg = ModelPackage::open(&reference(), Precision::Int8).expect("INT8 graphs ship");
    assert!(pkg
        .graph("encoder_model.onnx")
        .ends_with("encoder_model.int8.onnx"));
    let dir = copy_package();
    std::fs::remove_file(dir.path().join("encoder_model.int8.onnx")).unwrap();
    let err = ModelPackage::open(dir.path(), Precision::Int8).unwrap_err();
    assert!(err.to_string().contains("encoder_model.int8.onnx"), "{err}");
}

//! A synthetic "new line" in the form a plant hands over for adaptation.
//!
//! It exists to demonstrate and test `models finetune`: a material and two
//! defect kinds (burr, porosity) that the reference model never saw, written
//! as a plant would deliver them — one folder per class (`good/`, `burr/`,
//! `porosity/`), each defect image with its pixel mask beside it as
//! `<name>_mask.png`, and the plant's written standard in `standard.txt` —
//! plus a held-out split in the dataset layout (`manifest.jsonl`) so the
//! adapted model can be scored like any other.

use std::fs;
use std::path::{Path, PathBuf};

use super::dataset::{encode, io, DatasetError, ManifestWriter};
use super::{
    DefectKind, Language, Material, Phrasings, Rule, SynthClause, SynthLine, WrittenStandard,
};

/// The plant's written standard for the new line.
pub fn plant_standard() -> WrittenStandard {
    let clause = |number, kind, rule| SynthClause {
        number,
        kind: Some(kind),
        rule,
    };
    WrittenStandard {
        language: Language::En,
        text: "Acceptance standard for powder-coated brackets.\n\
               1. No burrs are permitted.\n\
               2. Any porosity is a reject.\n\
               3. Scratches are acceptable.\n\
               4. Dents larger than 2 mm are rejected."
            .to_string(),
        clauses: vec![
            clause(1, DefectKind::Burr, Rule::Ban),
            clause(2, DefectKind::Porosity, Rule::Ban),
            clause(3, DefectKind::Scratch, Rule::Tolerate),
            clause(4, DefectKind::Dent, Rule::Limit { limit_mm: 2.0 }),
        ],
    }
}

/// Classes of the new line: `None` is `good`.
const CLASSES: [Option<DefectKind>; 3] = [None, Some(DefectKind::Burr), Some(DefectKind::Porosity)];

fn class_name(kind: Option<DefectKind>) -> &'static str {
    kind.map_or("good", DefectKind::word)
}

/// Writes `per_class` images per class from `seed` in the plant's folder
/// layout, with masks and `standard.txt`.
pub fn write_plant_folders(out: &Path, per_class: usize, seed: u64) -> Result<(), DatasetError> {
    let mut line = SynthLine::new(seed);
    for kind in CLASSES {
        let dir = out.join(class_name(kind));
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        for i in 0..per_class {
            let (part, mask) = line.next_plant_part(Material::GreenPowderCoat, kind);
            let path = dir.join(format!("{i:04}.png"));
            part.image.save(&path).map_err(encode(&path))?;
            if let Some(mask) = mask {
                let path = dir.join(format!("{i:04}_mask.png"));
                mask.save(&path).map_err(encode(&path))?;
            }
        }
    }
    let standard = out.join("standard.txt");
    fs::write(&standard, plant_standard().text + "\n").map_err(io(&standard))
}

/// Writes `per_class` parts per class from `seed` as a dataset (images and
/// `manifest.jsonl`) judged under the plant's standard: the held-out split.
pub fn write_plant_manifest(
    out: &Path,
    per_class: usize,
    seed: u64,
) -> Result<PathBuf, DatasetError> {
    let mut manifest = ManifestWriter::create(out)?;
    let mut line = SynthLine::new(seed);
    let standard = plant_standard();
    let mut index = 0;
    for kind in CLASSES {
        for _ in 0..per_class {
            let (part, _) = line.next_plant_part(Material::GreenPowderCoat, kind);
            manifest.add(
                seed,
                index,
                &part,
                &[(standard.clone(), None)],
                Phrasings::Heldout,
            )?;
            index += 1;
        }
    }
    manifest.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_hold_every_class_with_masks_that_cover_the_defect() {
        let dir = tempfile::tempdir().unwrap();
        write_plant_folders(dir.path(), 3, 9).unwrap();
        for class in ["good", "burr", "porosity"] {
            let pngs = fs::read_dir(dir.path().join(class)).unwrap().count();
            assert_eq!(pngs, if class == "good" { 3 } else { 6 }, "{class}");
        }
        let mask = image::open(dir.path().join("burr/0000_mask.png"))
            .unwrap()
            .to_luma8();
        let lit = mask.pixels().filter(|p| p.0[0] > 0).count();
        assert!(lit > 10 && lit < 256 * 256 / 4, "{lit} mask pixels");
        let standard = fs::read_to_string(dir.path().join("standard.txt")).unwrap();
        assert!(standard.contains("burrs"));
    }
}

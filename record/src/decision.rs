//! PASS, FAIL or REVIEW: what a verdict decides, with the one text and the
//! one PLC code each decision has everywhere it is written.

use serde::{Deserialize, Serialize};

/// What was decided about an image or a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    Pass,
    Fail,
    Review,
}

impl Decision {
    /// Every decision, in PLC code order.
    pub const ALL: [Decision; 3] = [Decision::Pass, Decision::Fail, Decision::Review];

    /// As stored, published and shown: `PASS`, `FAIL`, `REVIEW`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Pass => "PASS",
            Decision::Fail => "FAIL",
            Decision::Review => "REVIEW",
        }
    }

    /// The result code a PLC reads: 0 pass, 1 fail, 2 review.
    pub fn plc_code(self) -> u8 {
        match self {
            Decision::Pass => 0,
            Decision::Fail => 1,
            Decision::Review => 2,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision text that is not `PASS`, `FAIL` or `REVIEW`.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a decision; allowed: PASS, FAIL, REVIEW")]
pub struct UnknownDecision(pub String);

impl std::str::FromStr for Decision {
    type Err = UnknownDecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decision::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDecision(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_json_and_code_agree() {
        for d in Decision::ALL {
            assert_eq!(d.as_str().parse::<Decision>().unwrap(), d);
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
            assert_eq!(Decision::ALL[d.plc_code() as usize], d);
        }
        let e = "pass".parse::<Decision>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "`pass` is not a decision; allowed: PASS, FAIL, REVIEW"
        );
    }
}

//! The committed JSON Schemas compile, and they refuse what the contract
//! forbids (so the tests that validate published payloads can fail).

use e2e::repo;

fn validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join(format!("schemas/{name}.schema.json"))).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

#[test]
fn every_schema_compiles_and_rejects_what_the_contract_forbids() {
    for entry in std::fs::read_dir(repo().join("schemas")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        validator(name.trim_end_matches(".schema.json"));
    }
    let plc = validator("result");
    let ok = serde_json::json!({"part_id":"p","ok":true,"code":0,"verdict_id":"0193c1e4-7a2b-7c3d-9e8f-0a1b2c3d4e5f"});
    assert!(plc.is_valid(&ok));
    let mut bad = ok.clone();
    bad["code"] = 7.into();
    assert!(!plc.is_valid(&bad), "code 7 accepted");
    let mut bad = ok.clone();
    bad["verdict_id"] = "not-a-uuid".into();
    assert!(!plc.is_valid(&bad), "a non-UUIDv7 id accepted");
    let reply = validator("command-reply");
    assert!(
        !reply.is_valid(&serde_json::json!({"command":"trigger","ok":false})),
        "an error reply without its error accepted"
    );
    let trigger = validator("trigger-command");
    assert!(!trigger.is_valid(&serde_json::json!({"part":"x"})));
    assert!(trigger.is_valid(&serde_json::json!({"part_id":"x","camera":"top"})));
}

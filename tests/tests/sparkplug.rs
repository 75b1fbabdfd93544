//! Sparkplug B mode, read by an independent decoder: the service (the real
//! binary) judges 300 parts as edge node `line-1` of group `plant-a`; a
//! SCADA-like subscriber records every `spBv1.0/...` message; a host asks
//! for a rebirth over NCMD; the service is killed (SIGKILL: the broker
//! publishes the NDEATH will), started again and stopped cleanly (NDEATH
//! published by the appliance). pysparkplug then decodes everything, and the
//! test checks births, bdSeq pairs, seq continuity and its wrap at 255, and
//! that every verdict of the verdict topic came as DDATA.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use e2e::{drop_file, repo, start_service, subscribe, Broker};
use serde_json::Value;
use synth::SynthLine;

const PARTS: usize = 300;

fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(repo().join("tests/sparkplug_decode.py"))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "sparkplug_decode.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Waits until `n` Sparkplug messages of `kind` have been recorded.
async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    log: &mut Vec<(String, Vec<u8>)>,
    kind: &str,
    n: usize,
) {
    let count = |log: &Vec<(String, Vec<u8>)>| {
        log.iter()
            .filter(|(t, _)| t.split('/').nth(2) == Some(kind))
            .count()
    };
    while count(log) < n {
        let m = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("waited 120 s for {kind} #{n}"))
            .unwrap();
        log.push(m);
    }
}

fn metric<'a>(msg: &'a Value, name: &str) -> &'a Value {
    msg["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{} has no metric {name}: {msg}", msg["type"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparkplug_messages_decode_with_an_independent_library() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let incoming = dir.path().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(
        dir.path().join("standard.txt"),
        "Housing standard.\n1. No scratches are permitted.\n2. No dents are permitted.",
    )
    .unwrap();
    let config = dir.path().join("station.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[station]
station = "spb-1"
recipe = "housing"

[[cameras]]
id = "line"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "incoming", poll = "20ms" }}

[[recipes]]
name = "housing"
standard = "standard.txt"

[model]
package = "{model}"

[mqtt]
url = "mqtt://127.0.0.1:{port}"

[mqtt.sparkplug]
group_id = "plant-a"
edge_node_id = "line-1"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"
"#,
            model = repo().join("models/reference").display(),
            port = broker.port,
        ),
    )
    .unwrap();
    let (_scada, mut spb) = subscribe(&broker, "scada", "spBv1.0/#").await;
    let (_mes, mut verdicts) = subscribe(&broker, "mes", "inspect/spb-1/verdict").await;
    let mut line = SynthLine::new(77);
    let pngs: Vec<Vec<u8>> = (0..6)
        .map(|_| vision::decode::encode_png(&line.next_part().image))
        .collect();
    for i in 0..PARTS {
        drop_file(&incoming, &format!("P-{i:04}.png"), &pngs[i % pngs.len()]);
    }

    let mut log = Vec::new();
    let mut service = start_service(&config);
    wait_for(&mut spb, &mut log, "DDATA", PARTS).await;

    // A host asks for a rebirth.
    let rebirth = python(&["rebirth"]);
    let (host, _) = subscribe(&broker, "host", "spBv1.0/plant-a/STATE/#").await;
    host.publish(
        "spBv1.0/plant-a/NCMD/line-1",
        rumqttc::QoS::AtMostOnce,
        false,
        decode_hex(rebirth.trim()),
    )
    .await
    .unwrap();
    wait_for(&mut spb, &mut log, "DBIRTH", 2).await;

    service.kill().unwrap(); // SIGKILL: the broker publishes the will
    service.wait().unwrap();
    wait_for(&mut spb, &mut log, "NDEATH", 1).await;

    let mut service = start_service(&config);
    wait_for(&mut spb, &mut log, "DBIRTH", 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = Command::new("kill").arg(service.id().to_string()).status(); // SIGTERM
    service.wait().unwrap();
    wait_for(&mut spb, &mut log, "NDEATH", 2).await;

    let mut verdict_ids = HashSet::new();
    while let Ok((_, p)) = verdicts.try_recv() {
        let v: Value = serde_json::from_slice(&p).unwrap();
        verdict_ids.insert(v["id"].as_str().unwrap().to_string());
    }

    let raw: Vec<Value> = log
        .iter()
        .map(|(t, p)| serde_json::json!({"topic": t, "payload": encode_hex(p)}))
        .collect();
    let path = dir.path().join("messages.json");
    std::fs::write(&path, serde_json::to_vec(&raw).unwrap()).unwrap();
    let decoded: Vec<Value> =
        serde_json::from_str(&python(&["decode", path.to_str().unwrap()])).unwrap();

    // Sessions: each starts with NBIRTH (seq 0) and, within it, every
    // message's seq is the previous one plus one, modulo 256.
    let mut sessions: Vec<Vec<&Value>> = Vec::new();
    let mut deaths = Vec::new();
    for m in &decoded {
        assert_eq!(m["group"], "plant-a");
        assert_eq!(m["edge_node"], "line-1");
        match m["type"].as_str().unwrap() {
            "NBIRTH" => sessions.push(vec![m]),
            "NDEATH" => deaths.push(metric(m, "bdSeq")["value"].as_i64().unwrap()),
            // The host's own command, seen by the recording subscriber.
            "NCMD" => {}
            _ => sessions.last_mut().expect("NBIRTH comes first").push(m),
        }
    }
    let mut wrapped = false;
    for s in &sessions {
        assert_eq!(s[0]["seq"], 0, "NBIRTH has seq 0");
        for pair in s.windows(2) {
            let (a, b) = (
                pair[0]["seq"].as_u64().unwrap(),
                pair[1]["seq"].as_u64().unwrap(),
            );
            assert_eq!(
                b,
                (a + 1) % 256,
                "seq continues: {} then {}",
                pair[0],
                pair[1]
            );
            wrapped |= a == 255 && b == 0;
        }
        assert_eq!(s[1]["type"], "DBIRTH");
        assert_eq!(s[1]["device"], "spb-1");
    }
    assert!(wrapped, "seq wrapped from 255 to 0");
    // Births: the first connection, the rebirth (same connection, same
    // bdSeq), the restarted service (next bdSeq); each death names the
    // bdSeq of the births it ends.
    assert_eq!(sessions.len(), 3);
    let bd: Vec<i64> = sessions
        .iter()
        .map(|s| metric(s[0], "bdSeq")["value"].as_i64().unwrap())
        .collect();
    assert_eq!(bd[1], bd[0], "a rebirth keeps bdSeq");
    assert_eq!(
        bd[2],
        (bd[0] + 1) % 256,
        "a new connection takes the next bdSeq"
    );
    assert_eq!(deaths, vec![bd[0], bd[2]], "NDEATH bdSeq matches NBIRTH");
    assert_eq!(metric(sessions[0][0], "bdSeq")["datatype"], "INT64");
    assert_eq!(
        metric(sessions[0][0], "Node Control/Rebirth")["value"],
        false
    );

    // DBIRTH declares every device metric with its datatype.
    let dbirth = sessions[0][1];
    for (name, datatype) in [
        ("Verdict/ID", "STRING"),
        ("Verdict/OK", "BOOLEAN"),
        ("Verdict/Code", "INT32"),
        ("Verdict/Confidence", "FLOAT"),
        ("Verdict/Decided At", "DATETIME"),
        ("Counters/Verdicts", "UINT64"),
        ("Inspection/Recipe", "STRING"),
    ] {
        assert_eq!(metric(dbirth, name)["datatype"], datatype, "{name}");
    }
    assert_eq!(metric(dbirth, "Inspection/Recipe")["value"], "housing");

    // Every verdict of the verdict topic came as DDATA, consistent with it.
    // A DDATA without a verdict reports a new recipe or model (a reload by
    // the healer on a busy machine sends one) and carries what changed.
    let has = |m: &Value, name: &str| {
        m["metrics"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|x| x["name"] == name))
    };
    let (ddata, context): (Vec<&Value>, Vec<&Value>) = decoded
        .iter()
        .filter(|m| m["type"] == "DDATA")
        .partition(|m| has(m, "Verdict/ID"));
    for c in &context {
        assert!(
            has(c, "Inspection/Recipe") && has(c, "Inspection/Model"),
            "a DDATA is either a verdict or a context update: {c}"
        );
    }
    let mut spb_ids = HashSet::new();
    for d in &ddata {
        let id = metric(d, "Verdict/ID")["value"]
            .as_str()
            .unwrap()
            .to_string();
        let record: Value =
            serde_json::from_str(metric(d, "Verdict/Record")["value"].as_str().unwrap()).unwrap();
        assert_eq!(record["id"], id.as_str());
        let decision = metric(d, "Verdict/Decision")["value"].as_str().unwrap();
        assert_eq!(record["decision"], decision);
        assert_eq!(metric(d, "Verdict/OK")["value"], decision == "PASS");
        spb_ids.insert(id);
    }
    assert_eq!(
        spb_ids, verdict_ids,
        "DDATA and the verdict topic carry the same verdicts"
    );
    let counted = ddata
        .get(PARTS - 1)
        .map(|d| metric(d, "Counters/Verdicts")["value"].as_u64().unwrap());
    assert_eq!(counted, Some(PARTS as u64));
    println!(
        "sparkplug figures: {} messages decoded by pysparkplug; {} DDATA; bdSeq {:?}; deaths {:?}",
        decoded.len(),
        ddata.len(),
        bd,
        deaths
    );
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

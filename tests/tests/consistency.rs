//! A wrong model cannot mislead: the decoder is made to write crafted
//! verdicts (`faults::script_model_output`) and the station must turn every
//! one that contradicts the clause it cites into REVIEW with the reason —
//! on MQTT, in the store and on the review page — while a consistent FAIL
//! stays FAIL. These are the verdicts a quality engineer saw in the demo
//! before the check existed.

use std::time::Duration;

use e2e::{http_request, load_config, repo, subscribe, Broker};
use store::accounts::{add_token, Role};

/// No clause about contamination: a contamination finding cites none.
const STANDARD: &str = "Acceptance criteria, cover surface.\n\
1. No cracks are permitted.\n\
2. Scratches longer than 3 mm are rejected.\n\
3. Holes are tolerated and do not cause rejection.\n\
4. Any dent is a reject.\n\
5. Stains are acceptable.\n";

fn tokens(t: &str) -> Vec<String> {
    t.split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_that_contradict_their_clauses_become_review_with_the_reason() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("standard.txt"), STANDARD).unwrap();
    let cfg = load_config(
        dir.path(),
        &format!(
            r#"
[station]
station = "cons-1"
recipe = "cover"

[[cameras]]
id = "line"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "unused" }}

[[recipes]]
name = "cover"
standard = "standard.txt"

[model]
package = "{model}"

[batching]
max_batch = 1

[mqtt]
url = "{url}"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"
"#,
            model = repo().join("models/reference").display(),
            url = broker.url(),
        ),
    );
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap();
    let token = add_token(&store, "qe", Role::Viewer, None).await.unwrap();
    let (_sub, mut messages) = subscribe(&broker, "cons-sub", "inspect/cons-1/verdict").await;
    let station = e2e::InProcess::start(cfg);
    let port = station.http_port;

    // (decoder output, expected decision, what the reason must say)
    let cases = [
        (
            "<fail> hole <loc_100> <loc_100> <loc_300> <loc_300> <clause_3> </s>",
            "REVIEW",
            "is cited as violating clause 3, but clause 3 tolerates it",
        ),
        (
            "<pass> dent <loc_100> <loc_100> <loc_200> <loc_200> <ok> \
             dent <loc_500> <loc_500> <loc_600> <loc_600> <ok> </s>",
            "REVIEW",
            "finding 2 (dent) is shown as tolerated, but clause 4 rejects any dent",
        ),
        (
            // No clause names contamination: the grammar lets it cite none,
            // so a FAIL on it alone has nothing to rest on.
            "<fail> contamination <loc_100> <loc_100> <loc_300> <loc_300> <ok> </s>",
            "REVIEW",
            "FAIL without a finding that a clause of the standard rejects",
        ),
        (
            // 0.1 mm/px on a 256 px part: 0.5 mm, under the 3 mm limit.
            "<fail> scratch <loc_100> <loc_100> <loc_120> <loc_105> <clause_2> </s>",
            "REVIEW",
            "rejects only those over 3 mm",
        ),
        (
            "<fail> crack <loc_100> <loc_100> <loc_300> <loc_300> <clause_1> </s>",
            "FAIL",
            "",
        ),
    ];
    for (seq, (script, want, why)) in cases.iter().enumerate() {
        appliance::faults::script_model_output(Some(tokens(script)));
        let feed = e2e::feed_frames(station.frames.clone(), 1, 40 + seq as u64);
        let (_, payload) = tokio::time::timeout(Duration::from_secs(60), messages.recv())
            .await
            .expect("a verdict on MQTT")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        feed.join().unwrap();
        e2e::assert_schema("verdict.v1", &v);
        assert_eq!(v["decision"], *want, "{script}: {v:#}");
        // The verdict shows the measured size beside the limit it was held to.
        let first = &v["findings"][0];
        if script.contains("<clause_2>") {
            assert_eq!(first["limit_mm"], 3.0, "{v:#}");
            assert!(first["size_mm"].as_f64().unwrap() < 3.0, "{v:#}");
        } else {
            assert!(first.get("limit_mm").is_none(), "{v:#}");
        }
        let reason = v["review_reason"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{script}: {reason}");
        if *want == "REVIEW" {
            assert!(
                reason.contains("the verdict contradicts the standard"),
                "{reason}"
            );
            // The PLC is told REVIEW (code 2), not the model's word.
            let id = v["id"].as_str().unwrap();
            let stored: String = sqlx::query_scalar("SELECT decision FROM verdicts WHERE id = ?")
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(stored, "REVIEW");
            // The review page says why, above the findings.
            let (status, _, page) = http_request(
                port,
                "GET",
                &format!("/verdicts/{id}"),
                &[format!("Authorization: Bearer {token}")],
                "text/plain",
                "",
            );
            assert_eq!(status, 200, "{page}");
            assert!(
                page.contains("Why a person must decide") && page.contains(why),
                "the page does not say why: {page}"
            );
            assert!(
                !page.contains("tolerated by the standard"),
                "an unconfirmed toleration is shown as the standard's: {page}"
            );
        }
    }
    appliance::faults::script_model_output(None);
    station.stop().await;
}

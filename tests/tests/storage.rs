//! The store on both databases it supports: SQLite (the station's file) and
//! PostgreSQL (a plant's central database, see `e2e::Postgres` for where it
//! runs). The same sequence of commits, reads and acknowledgements must give
//! the same answers on each.

use e2e::Postgres;
use fusion::Decision;
use record::{Finding, ImageRef, ModelRef, StationRef, Timings, Verdict};
use store::{Backend, Store};

fn verdict(n: u32, decision: Decision, image_sha: &str, findings: usize) -> Verdict {
    let at = format!("2026-11-29T10:00:{n:02}.000000Z");
    Verdict {
        schema: record::SCHEMA.into(),
        id: format!("0193c1e4-7a2b-7c3d-9e8f-0a1b2c3d4e{n:02}"),
        station: StationRef {
            site: "plant".into(),
            line: "line-1".into(),
            station: "st-1".into(),
        },
        camera: "top".into(),
        part_id: Some(format!("P-{n}")),
        trigger_id: None,
        frame_seq: n as u64,
        recipe: "housing".into(),
        standard_sha256: "ab".repeat(32),
        decision,
        confidence: 0.875,
        review_reason: None,
        findings: (0..findings)
            .map(|i| Finding {
                defect: "scratch".into(),
                box_norm: [0.125, 0.25, 0.5, 0.75],
                box_px: [10, 20, 40, 60],
                size_mm: 3.5,
                clause: Some(1 + i as u32),
                clause_label: Some((1 + i).to_string()),
                clause_text: Some("No scratches are permitted.".into()),
                limit_mm: None,
                max_count: None,
                confidence: 0.9,
            })
            .collect(),
        model: ModelRef {
            name: "reference-inspector".into(),
            version: "0.2.0".into(),
            sha256: "cd".repeat(32),
        },
        timings: Timings {
            captured_at: at.clone(),
            queued_at: at.clone(),
            decided_at: at,
            published_at: None,
            inference_ms: 12.5,
        },
        image: ImageRef {
            sha256: image_sha.into(),
            path: format!("/data/images/{image_sha}.png"),
            bytes: 1234,
            width: 640,
            height: 480,
            not_kept: None,
        },
        context_loss: 0.0,
    }
}

/// Commits, reads back, acknowledges and reopens; returns nothing, asserts
/// everything.
async fn exercise(url: &str, backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(url, &dir.path().join("data"))
        .await
        .unwrap()
        .with_station("st-1");
    assert_eq!(store.backend(), backend);
    let image_a = "a1".repeat(32);
    let image_b = "b2".repeat(32);
    let verdicts = [
        verdict(1, Decision::Pass, &image_a, 0),
        verdict(2, Decision::Fail, &image_b, 2),
        // The same picture again, now failed: its image must be kept longer.
        verdict(3, Decision::Fail, &image_a, 1),
    ];
    for v in &verdicts {
        let outbox = vec![
            (
                "inspect/st-1/verdict".to_string(),
                format!("{{\"id\":\"{}\"}}", v.id),
            ),
            ("inspect/st-1/result".to_string(), "{}".to_string()),
        ];
        store
            .commit_verdict(v, "1. No scratches are permitted.", &outbox, None)
            .await
            .unwrap();
    }
    // A verdict id committed twice is refused, and nothing of it is kept.
    assert!(store
        .commit_verdict(&verdicts[0], "x", &[("t".into(), "p".into())], None)
        .await
        .is_err());

    let pending = store.pending(0, 100).await.unwrap();
    assert_eq!(pending.len(), 6);
    assert!(
        pending.windows(2).all(|w| w[0].seq < w[1].seq),
        "in commit order"
    );
    assert_eq!(pending[0].verdict_id, verdicts[0].id);
    assert_eq!(pending[0].topic, "inspect/st-1/verdict");
    assert_eq!(pending[5].verdict_id, verdicts[2].id);
    let after_two = store.pending(pending[1].seq, 100).await.unwrap();
    assert_eq!(after_two.len(), 4);

    // Another station sharing the database drains only its own rows.
    let neighbour = store.clone().with_station("st-2");
    assert!(neighbour.pending(0, 100).await.unwrap().is_empty());
    assert_eq!(neighbour.backlog().await.unwrap().pending, 0);

    let backlog = store.backlog().await.unwrap();
    assert_eq!(backlog.pending, 6);
    assert!(backlog.oldest.is_some());
    store
        .mark_published(&[pending[0].seq, pending[1].seq])
        .await
        .unwrap();
    assert_eq!(store.backlog().await.unwrap().pending, 4);

    let pool = store.pool();
    let (standards,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM standard_versions")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(standards, 1, "one standard version, however many verdicts");
    let class: String = sqlx::query_scalar("SELECT retention_class FROM images WHERE sha256 = $1")
        .bind(&image_a)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(class, "keep", "an image that failed once is kept");
    let published: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, published_at FROM verdicts ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(published[0].1.is_some() && published[1].1.is_none());
    let findings: Vec<(i64, String, f64, Option<i64>)> = sqlx::query_as(
        "SELECT idx, defect, x1, clause FROM findings WHERE verdict_id = $1 ORDER BY idx",
    )
    .bind(&verdicts[1].id)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        findings,
        vec![
            (0, "scratch".to_string(), 0.5, Some(1)),
            (1, "scratch".to_string(), 0.5, Some(2))
        ]
    );
    let (record, confidence): (String, f64) =
        sqlx::query_as("SELECT record, confidence FROM verdicts WHERE id = $1")
            .bind(&verdicts[2].id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(confidence, 0.875);
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["decision"], "FAIL");

    let error_id = store
        .record_ingest_error("st-1", "top", "P-9.png", "truncated PNG", b"\x89PNG")
        .await
        .unwrap();
    let reason: String = sqlx::query_scalar("SELECT reason FROM ingest_errors WHERE id = $1")
        .bind(&error_id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(reason, "truncated PNG");
    drop(store);

    // Reopening runs the migrations again (a no-op) and finds everything.
    let store = Store::open(url, &dir.path().join("data"))
        .await
        .unwrap()
        .with_station("st-1");
    assert_eq!(store.backlog().await.unwrap().pending, 4);
    health_history(&store).await;
    shadow(&store, &verdicts).await;
}

/// A candidate model's judgements beside the running model's verdicts:
/// agreement per candidate, the disagreements with both verdicts, and the
/// operators' standing decision on a reviewed one.
async fn shadow(store: &Store, verdicts: &[Verdict]) {
    use store::shadow;
    let candidate = ModelRef {
        name: "reference-inspector".into(),
        version: "0.4.0-rc1".into(),
        sha256: "ee".repeat(32),
    };
    let judged = |v: &Verdict, decision: Decision, at: &str| record::ShadowVerdict {
        schema: record::SHADOW_SCHEMA.into(),
        verdict_id: v.id.clone(),
        station: "st-1".into(),
        candidate: candidate.clone(),
        decision,
        confidence: 0.75,
        review_reason: None,
        findings: vec![],
        running_decision: v.decision,
        inference_ms: 30.5,
        judged_at: at.into(),
    };
    // Verdicts 1 (PASS) and 2 (FAIL): the candidate agrees on the first
    // and passes the second; verdict 3 was skipped (no room).
    let agreeing = judged(&verdicts[0], Decision::Pass, "2026-11-29T10:00:01.500000Z");
    let passing = judged(&verdicts[1], Decision::Pass, "2026-11-29T10:00:02.500000Z");
    shadow::record(store, &agreeing).await.unwrap();
    shadow::record(store, &passing).await.unwrap();
    assert!(
        shadow::record(store, &passing).await.is_err(),
        "one candidate judgement per verdict"
    );
    let summaries = shadow::summaries(store).await.unwrap();
    assert_eq!(summaries.len(), 1);
    let s = &summaries[0];
    assert_eq!((s.compared, s.agreed), (2, 1));
    assert_eq!(s.agreement(), Some(0.5));
    // Verdict 2 was reviewed PASS above (the health history's reviews).
    assert_eq!((s.candidate_upheld, s.running_upheld), (1, 0));
    assert_eq!(s.version, "0.4.0-rc1");
    assert_eq!(s.last, "2026-11-29T10:00:02.500000Z");

    let listed = shadow::disagreements(store, &candidate.sha256, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].running.id, verdicts[1].id);
    assert_eq!(listed[0].running.decision, Decision::Fail);
    assert_eq!(listed[0].candidate, passing);
    assert_eq!(listed[0].standing, Some(Decision::Pass));

    // Reviewed again: siding with the running model, then (the latest
    // review stands) with the candidate.
    for (n, decision, upheld) in [(1, "FAIL", (0, 1)), (2, "PASS", (1, 0))] {
        sqlx::query(
            "INSERT INTO reviews (id, verdict_id, reviewer, decision, agrees, reason, corrections, created_at)
             VALUES ($1, $2, 'ana', $3, 0, 'looked again', '[]', $4)",
        )
        .bind(format!("review-{n}"))
        .bind(&verdicts[1].id)
        .bind(decision)
        .bind(format!("2026-11-29T12:00:0{n}.000000Z"))
        .execute(store.pool())
        .await
        .unwrap();
        let s = &shadow::summaries(store).await.unwrap()[0];
        assert_eq!(
            (s.candidate_upheld, s.running_upheld),
            upheld,
            "after {decision}"
        );
    }
    let listed = shadow::disagreements(store, &candidate.sha256, 10)
        .await
        .unwrap();
    assert_eq!(listed[0].standing, Some(Decision::Pass));
    assert_eq!(
        shadow::of_verdict(store, &verdicts[1].id).await.unwrap(),
        Some(passing)
    );
    assert_eq!(
        shadow::of_verdict(store, &verdicts[2].id).await.unwrap(),
        None
    );
    // Another station sharing the database sees none of it.
    let neighbour = store.clone().with_station("st-2");
    assert!(shadow::summaries(&neighbour).await.unwrap().is_empty());
}

/// The monitor's history and the review agreement it reads, on the same
/// store: samples with and without values, events, per-station scoping.
async fn health_history(store: &Store) {
    use store::health_history::{self as history, Event, Sample};
    let sample = Sample {
        at: "2026-11-29T10:01:00.000000Z".into(),
        state: "alert".into(),
        latency_p99: Some(1.5),
        latency_threshold: 1.2,
        context_loss: None,
        context_loss_threshold: 0.05,
        consistency: Some(0.8),
        consistency_threshold: 0.9,
        throughput: 12.5,
        stage_p95: [Some(0.01), Some(0.9), None, Some(1.2)],
    };
    history::write_sample(store, &sample).await.unwrap();
    let e = Event {
        at: "2026-11-29T10:01:00.000000Z".into(),
        kind: "alert".into(),
        figure: Some("latency".into()),
        value: Some(1.5),
        threshold: Some(1.2),
        detail: "latency 1.500 s over 40 samples; threshold 1.200 s".into(),
    };
    history::write_event(store, &e).await.unwrap();
    let reload = Event {
        figure: None,
        value: None,
        threshold: None,
        kind: "reload".into(),
        ..e.clone()
    };
    history::write_event(store, &reload).await.unwrap();
    let back = history::samples(store, "2026-11-29").await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].latency_p99, Some(1.5));
    assert_eq!(back[0].context_loss, None);
    assert_eq!(back[0].stage_p95, sample.stage_p95);
    let events = history::events(store, 10).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["reload", "alert"], "newest first");
    assert_eq!(events[1].value, Some(1.5));
    assert_eq!(events[0].figure, None);
    // Another station sees none of it.
    let other = store.clone().with_station("st-2");
    assert!(history::events(&other, 10).await.unwrap().is_empty());
    assert!(history::samples(&other, "2026").await.unwrap().is_empty());

    // Reviews: one agreeing, one overriding, one too old for the window.
    for (i, (verdict, agrees, at)) in [
        (1, 1, "2026-11-29T11:00:00.000000Z"),
        (2, 0, "2026-11-29T11:05:00.000000Z"),
        (3, 1, "2026-11-27T11:00:00.000000Z"),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO reviews (id, verdict_id, reviewer, decision, agrees, reason, corrections, created_at)
             VALUES ($1, $2, 'olga', 'PASS', $3, 'checked', '{}', $4)",
        )
        .bind(format!("r-{i}"))
        .bind(format!("0193c1e4-7a2b-7c3d-9e8f-0a1b2c3d4e{verdict:02}"))
        .bind(agrees as i64)
        .bind(at)
        .execute(store.pool())
        .await
        .unwrap();
    }
    let since = "2026-11-28T12:00:00.000000Z";
    assert_eq!(
        history::review_agreement(store, since).await.unwrap(),
        (2, 1)
    );
    assert_eq!(
        history::review_agreement(&other, since).await.unwrap(),
        (0, 0)
    );
    history::prune(store, "2026-11-29T10:30:00Z").await.unwrap();
    assert!(history::events(store, 10).await.unwrap().is_empty());
}

/// Retention on a store: PASS images go first (by age and by quota), FAIL
/// ones last; rows stay, marked with why their file went.
async fn retention(url: &str) {
    use store::retention::{bytes_kept, sweep, Policy};
    let day = std::time::Duration::from_secs(86_400);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(url, &dir.path().join("data")).await.unwrap();
    // P1 (PASS), F1 (FAIL), P2 (PASS), F2 (FAIL), 1,000 bytes each, in this order.
    let mut paths = Vec::new();
    let mut thumbs = Vec::new();
    for (n, decision) in [
        Decision::Pass,
        Decision::Fail,
        Decision::Pass,
        Decision::Fail,
    ]
    .into_iter()
    .enumerate()
    {
        let stored = store.put_image(&[n as u8; 1000], "png").unwrap();
        let mut v = verdict(n as u32 + 10, decision, &stored.sha256, 0);
        v.image.path = stored.path.display().to_string();
        v.image.bytes = stored.bytes;
        store.commit_verdict(&v, "1. x", &[], None).await.unwrap();
        // The review pages' thumbnail of it goes with it.
        let thumb = store.thumbnail_file(&stored.sha256);
        std::fs::create_dir_all(thumb.parent().unwrap()).unwrap();
        std::fs::write(&thumb, b"jpeg").unwrap();
        thumbs.push(thumb);
        paths.push(stored.path);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let policy = |quota: u64| Policy {
        pictures: true,
        max_age: 90 * day,
        keep_max_age: 365 * day,
        disk_quota: quota,
        verdict_months: 0,
    };
    let now = chrono::Utc::now();
    let s = sweep(&store, policy(1 << 30), now + chrono::Duration::days(10))
        .await
        .unwrap();
    assert_eq!(
        (s.deleted_for_age, s.deleted_for_quota, s.bytes_kept),
        (0, 0, 4000)
    );
    // Over quota: both PASS images go, though F1 is older than P2.
    let s = sweep(&store, policy(2500), now).await.unwrap();
    assert_eq!(
        (s.deleted_for_quota, s.bytes_freed, s.bytes_kept),
        (2, 2000, 2000)
    );
    let exists: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
    assert_eq!(exists, vec![false, true, false, true]);
    let exists: Vec<bool> = thumbs.iter().map(|p| p.exists()).collect();
    assert_eq!(exists, vec![false, true, false, true], "thumbnails");
    // PASS age passed, FAIL age not yet: nothing more to delete.
    let s = sweep(&store, policy(1 << 30), now + chrono::Duration::days(100))
        .await
        .unwrap();
    assert_eq!(s.deleted_for_age, 0);
    let s = sweep(&store, policy(1 << 30), now + chrono::Duration::days(400))
        .await
        .unwrap();
    assert_eq!((s.deleted_for_age, s.bytes_kept), (2, 0));
    assert!(paths.iter().all(|p| !p.exists()));
    assert_eq!(bytes_kept(&store).await.unwrap(), 0);
    let reasons: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT retention_class, deleted_reason FROM images ORDER BY created_at")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let reasons: Vec<(&str, Option<&str>)> = reasons
        .iter()
        .map(|(c, r)| (c.as_str(), r.as_deref()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("pass", Some("disk quota")),
            ("keep", Some("age")),
            ("pass", Some("disk quota")),
            ("keep", Some("age")),
        ]
    );
    let (verdicts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM verdicts")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(verdicts, 4, "verdicts are never deleted");

    // A disk that cannot spare the reserve gets no new image.
    let full = store.with_min_free(u64::MAX / 2);
    let err = full.put_image(&[9u8; 10], "png").unwrap_err().to_string();
    assert!(err.contains("storage.min_free"), "{err}");
}

/// Whole months of verdicts: on PostgreSQL each month's rows sit in their
/// own partitions and retention drops the old ones whole; on SQLite the same
/// months go as rows. Either way their findings, reviews, shadow judgements,
/// published outbox rows and the pictures only they showed go with them, and
/// a picture a kept verdict still shows stays.
async fn verdict_months(url: &str, backend: Backend) {
    use store::months::{self, Month};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(url, &dir.path().join("data"))
        .await
        .unwrap()
        .with_station("st-1");
    let month = |year, month| Month { year, month };
    let ensured = months::ensure(&store, month(2026, 9), month(2027, 3))
        .await
        .unwrap();
    if backend == Backend::Postgres {
        // Store::open made this month's and the next two's already.
        assert!(ensured.created.contains(&month(2026, 9)), "{ensured:?}");
    } else {
        assert_eq!(ensured, months::Ensured::default(), "nothing on SQLite");
    }
    // A verdict minted at `at` (its UUIDv7 carries the time).
    let minted = |n: u32, at: &str, image: &store::StoredImage| {
        let t = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, t.timestamp() as u64, 0);
        let mut v = verdict(n, Decision::Fail, &image.sha256, 1);
        v.id = uuid::Uuid::new_v7(ts).to_string();
        v.image.path = image.path.display().to_string();
        v.image.bytes = image.bytes;
        v
    };
    let only_old = store.put_image(&[1u8; 100], "png").unwrap();
    let shared = store.put_image(&[2u8; 100], "png").unwrap();
    let thumb = store.thumbnail_file(&only_old.sha256);
    std::fs::create_dir_all(thumb.parent().unwrap()).unwrap();
    std::fs::write(&thumb, b"jpeg").unwrap();
    let ancient = minted(1, "2020-05-04T10:00:00Z", &only_old);
    let september = minted(2, "2026-09-14T10:00:00Z", &only_old);
    let september_too = minted(3, "2026-09-30T23:59:59Z", &shared);
    let november = minted(4, "2026-11-02T00:00:00Z", &shared);
    for v in [&ancient, &september, &september_too, &november] {
        let outbox = [("inspect/st-1/verdict".to_string(), "{}".to_string())];
        store
            .commit_verdict(v, "1. x", &outbox, None)
            .await
            .unwrap();
    }
    let pending = store.pending(0, 100).await.unwrap();
    let seqs: Vec<i64> = pending.iter().map(|r| r.seq).collect();
    store.mark_published(&seqs).await.unwrap();
    sqlx::query(
        "INSERT INTO reviews (id, verdict_id, reviewer, decision, agrees, reason, corrections, created_at)
         VALUES ($1, $2, 'ana', 'PASS', 0, 'cosmetic', '{}', '2026-09-15T08:00:00.000000Z')",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&september.id)
    .execute(store.pool())
    .await
    .unwrap();
    if backend == Backend::Postgres {
        let home = |id: String| {
            let store = store.clone();
            async move {
                let (table,): (String,) = sqlx::query_as(
                    "SELECT CAST(tableoid::regclass AS TEXT) FROM verdicts WHERE id = $1",
                )
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap();
                table
            }
        };
        assert_eq!(home(september.id.clone()).await, "verdicts_2026_09");
        assert_eq!(home(september_too.id.clone()).await, "verdicts_2026_09");
        assert_eq!(home(november.id.clone()).await, "verdicts_2026_11");
        assert_eq!(home(ancient.id.clone()).await, "verdicts_default");
        // A month the default partition already holds rows of keeps them there.
        let ensured = months::ensure(&store, month(2020, 5), month(2020, 6))
            .await
            .unwrap();
        assert_eq!(ensured.left_in_default, vec![month(2020, 5)]);
        assert_eq!(ensured.created, vec![month(2020, 6)]);
    }
    // Keep three months before January 2027: October, November, December.
    let now = chrono::DateTime::parse_from_rfc3339("2027-01-15T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let (_, gone) = months::maintain(&store, now, 3).await.unwrap();
    let gone = gone.expect("verdict_months is set");
    let count = |sql: &'static str| {
        let store = store.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(store.pool()).await.unwrap();
            n
        }
    };
    assert_eq!(gone.reviews_deleted, 1, "{gone:?}");
    assert_eq!(gone.outbox_rows_deleted, 3, "{gone:?}");
    assert_eq!(gone.images_removed, 1, "{gone:?}");
    if backend == Backend::Postgres {
        assert_eq!(gone.months_dropped, vec![month(2020, 6), month(2026, 9)]);
        assert_eq!(
            gone.verdict_rows_deleted, 1,
            "the one in the default partition"
        );
        let months = months::stored(&store).await.unwrap();
        assert_eq!(months.first(), Some(&month(2026, 10)), "{months:?}");
    } else {
        assert_eq!(gone.verdict_rows_deleted, 3);
    }
    assert_eq!(count("SELECT COUNT(*) FROM verdicts").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM findings").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM reviews").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM outbox").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM images").await, 1);
    assert!(
        !only_old.path.exists() && !thumb.exists(),
        "its picture went"
    );
    assert!(shared.path.exists(), "November still shows this one");
    let kept = store::reviews::detail(&store, &november.id).await.unwrap();
    assert_eq!(kept.verdict["id"], november.id.as_str());
    // Nothing more to let go the next time.
    let (_, again) = months::maintain(&store, now, 3).await.unwrap();
    assert_eq!(again, Some(months::LetGo::default()));
}

/// Verdicts committed at once from many tasks, as a batch's are: they share
/// transactions (see `store::commit`), pictures repeat within a group, one
/// verdict is refused, and every other one is stored whole with its outbox
/// rows side by side.
async fn concurrent_commits(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(url, &dir.path().join("data"))
        .await
        .unwrap()
        .with_station("st-1");
    let earlier = verdict(0, Decision::Pass, &"00".repeat(32), 0);
    store
        .commit_verdict(&earlier, "1. x", &[], None)
        .await
        .unwrap();
    let n = 40u32;
    let image = |i: u32| format!("{:02}", i % 5).repeat(32);
    let tasks: Vec<_> = (1..=n)
        .map(|i| {
            let store = store.clone();
            // Verdict 17 reuses the earlier verdict's id: refused.
            let mut v = verdict(
                i,
                if i % 7 == 0 {
                    Decision::Fail
                } else {
                    Decision::Pass
                },
                &image(i),
                (i % 3) as usize,
            );
            if i == 17 {
                v.id = earlier.id.clone();
            }
            tokio::spawn(async move {
                let outbox = vec![
                    ("inspect/st-1/verdict".to_string(), v.id.clone()),
                    ("inspect/st-1/result".to_string(), v.id.clone()),
                ];
                store.commit_verdict(&v, "1. x", &outbox, None).await
            })
        })
        .collect();
    let mut refused = 0;
    for (i, t) in (1..=n).zip(tasks) {
        let result = t.await.unwrap();
        assert_eq!(result.is_err(), i == 17, "verdict {i}: {result:?}");
        refused += result.is_err() as u32;
    }
    assert_eq!(refused, 1);
    let commits = store.group_commits();
    assert_eq!(commits.verdicts, n as u64, "{commits:?}");
    let pool = store.pool();
    let (verdicts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM verdicts")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(verdicts, n as i64);
    let (findings,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM findings")
        .fetch_one(pool)
        .await
        .unwrap();
    let expected: u32 = (1..=n).filter(|&i| i != 17).map(|i| i % 3).sum();
    assert_eq!(findings, expected as i64);
    for k in 0..5u32 {
        let class: String =
            sqlx::query_scalar("SELECT retention_class FROM images WHERE sha256 = $1")
                .bind(image(k))
                .fetch_one(pool)
                .await
                .unwrap();
        let failed = (1..=n).any(|i| i != 17 && i % 5 == k && i % 7 == 0);
        assert_eq!(class == "keep", failed, "image {k}: {class}");
    }
    let rows = store.pending(0, 1000).await.unwrap();
    assert_eq!(rows.len(), 2 * (n as usize - 1));
    for pair in rows.chunks(2) {
        assert_eq!(
            pair[0].verdict_id, pair[1].verdict_id,
            "a verdict's rows side by side"
        );
        assert_eq!(pair[0].topic, "inspect/st-1/verdict");
        assert_eq!(pair[0].payload, pair[0].verdict_id);
    }
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    store
        .mark_published(&rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .await
        .unwrap();
    let (unpublished,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM verdicts WHERE published_at IS NULL")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(unpublished, 1, "only the verdict that had no outbox rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("station.db").display());
    exercise(&url, Backend::Sqlite).await;
    let url = format!("sqlite://{}", dir.path().join("retention.db").display());
    retention(&url).await;
    let url = format!("sqlite://{}", dir.path().join("months.db").display());
    verdict_months(&url, Backend::Sqlite).await;
    let url = format!("sqlite://{}", dir.path().join("concurrent.db").display());
    concurrent_commits(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_on_postgresql() {
    let pg = Postgres::start().await;
    exercise(&pg.url, Backend::Postgres).await;
    let pg = Postgres::start().await;
    retention(&pg.url).await;
    let pg = Postgres::start().await;
    verdict_months(&pg.url, Backend::Postgres).await;
    let pg = Postgres::start().await;
    concurrent_commits(&pg.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_url_of_another_kind_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open("mysql://db/x", dir.path())
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("mysql://db/x") && text.contains("sqlite://") && text.contains("postgres://"),
        "{text}"
    );
}

/// A station whose verdicts go to a central PostgreSQL: every verdict is
/// stored there and published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_stores_its_verdicts_in_postgresql() {
    e2e::show_logs();
    let parts = 30;
    let pg = Postgres::start().await;
    let broker = e2e::Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("standard.txt"),
        "Housing standard.\n1. No scratches are permitted.\n2. No dents are permitted.",
    )
    .unwrap();
    let cfg = e2e::load_config(
        dir.path(),
        &format!(
            r#"
[station]
station = "pg-1"
recipe = "housing"

[[cameras]]
id = "line"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "unused" }}

[[recipes]]
name = "housing"
standard = "standard.txt"

[model]
package = "{model}"

[mqtt]
url = "mqtt://127.0.0.1:{port}"

[storage]
database_url = "{db}"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"
"#,
            model = e2e::repo().join("models/reference").display(),
            port = broker.port,
            db = pg.url,
        ),
    );
    let (_mes, mut verdicts) = e2e::subscribe(&broker, "mes", "inspect/pg-1/verdict").await;
    let mut station = e2e::InProcess::start(cfg);
    e2e::feed_frames(station.frames.clone(), parts, 5);
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < parts {
        let (_, p) = tokio::select! {
            m = verdicts.recv() => m.unwrap(),
            r = &mut station.task => panic!("the station stopped: {r:?}"),
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => panic!("{} of {parts} verdicts arrived", ids.len()),
        };
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    station.stop().await;
    let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
    let stored: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT id FROM verdicts WHERE station = 'pg-1'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(
        stored, ids,
        "every published verdict is stored in PostgreSQL"
    );
    let (pending,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, 0, "every outbox row acknowledged");
    pool.close().await;
}

/// A full disk never stops verdicts: with less free space than
/// `storage.min_free`, every part is still decided, stored and published;
/// its image is not written and the verdict says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_verdicts_flowing_without_images() {
    let parts = 8;
    let broker = e2e::Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("standard.txt"),
        "Housing standard.\n1. No scratches are permitted.",
    )
    .unwrap();
    let cfg = e2e::load_config(
        dir.path(),
        &format!(
            r#"
[station]
station = "full-1"
recipe = "housing"

[[cameras]]
id = "line"
mm_per_px = 0.1
source = {{ kind = "hot_folder", path = "unused" }}

[[recipes]]
name = "housing"
standard = "standard.txt"

[model]
package = "{model}"

[mqtt]
url = "mqtt://127.0.0.1:{port}"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "1000 TiB"

[http]
bind = "127.0.0.1:0"
"#,
            model = e2e::repo().join("models/reference").display(),
            port = broker.port,
        ),
    );
    let (_mes, mut verdicts) = e2e::subscribe(&broker, "mes", "inspect/full-1/verdict").await;
    let station = e2e::InProcess::start(cfg);
    e2e::feed_frames(station.frames.clone(), parts, 8);
    for _ in 0..parts {
        let (_, p) = tokio::time::timeout(std::time::Duration::from_secs(60), verdicts.recv())
            .await
            .expect("verdicts arrive with the disk full")
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        e2e::assert_schema("verdict.v1", &v);
        assert_eq!(v["image"]["path"], "");
        let why = v["image"]["not_kept"].as_str().unwrap();
        assert!(why.contains("storage.min_free"), "{why}");
    }
    station.stop().await;
    assert!(
        !dir.path().join("data/images").exists()
            || std::fs::read_dir(dir.path().join("data/images"))
                .unwrap()
                .count()
                == 0,
        "no image written"
    );
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("appliance.db").display()
    ))
    .await
    .unwrap();
    let (stored, without_file): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM verdicts),
                (SELECT COUNT(*) FROM images WHERE deleted_reason LIKE 'disk nearly full%')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, parts as i64);
    assert_eq!(without_file, 6, "six distinct pictures, none kept");
}

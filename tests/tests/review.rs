//! The review UI and API over HTTP, with the security they promise: a
//! station judges parts; an operator signs in, filters, opens a FAIL
//! verdict (box and violated clause on the page) and overrides it with a
//! reason; and each refusal holds — no session, wrong password, missing
//! CSRF token, a viewer reviewing, `../` in an image URL, SQL
//! metacharacters in filters, too many failed sign-ins.

use std::time::Duration;

use e2e::web::{form, get, login, sign_in};
use e2e::{http_request, load_config, repo, Broker};
use serde_json::Value;
use store::accounts::{add_token, add_user, Role};

const PARTS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_ui_and_api_with_their_security() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("standard.txt"), e2e::banning_standard()).unwrap();
    let cfg = load_config(
        dir.path(),
        &format!(
            r#"
[station]
station = "rev-1"
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
url = "mqtt://127.0.0.1:{mqtt}"

[storage]
database_url = "sqlite://appliance.db"
data_dir = "data"
min_free = "0 B"

[http]
bind = "127.0.0.1:0"

[monitoring]
evaluate_every = "200ms"
# This test is about review, not latency: a burst of parts on a busy CI
# machine must not raise a latency alert, whose reload would restart the
# review-agreement figure this test reads.
latency_threshold = "60s"
"#,
            model = repo().join("models/reference").display(),
            mqtt = broker.port,
        ),
    );
    let store = store::Store::open(&cfg.storage.database_url, &cfg.storage.data_dir)
        .await
        .unwrap();
    let thumbs = store.data_dir().join("thumbs");
    add_user(&store, "ana", Role::Operator, "ana's long password")
        .await
        .unwrap();
    add_user(&store, "vic", Role::Viewer, "vic's long password")
        .await
        .unwrap();
    let mes = add_token(&store, "mes", Role::Viewer, None).await.unwrap();
    let admin = add_token(&store, "trainer", Role::Admin, None)
        .await
        .unwrap();

    // The MES, listening for reviews.
    let (_mes_client, mut reviews_heard) =
        e2e::subscribe(&broker, "mes", "inspect/rev-1/review").await;
    let station = e2e::InProcess::start(cfg);
    let port = station.http_port;
    e2e::feed_frames(station.frames.clone(), PARTS, 2024);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    e2e::wait_until_stored(&store, PARTS, Duration::from_secs(90)).await;

    // What the charts must show, from the database.
    while sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM verdicts WHERE published_at IS NULL")
        .fetch_one(store.pool())
        .await
        .unwrap()
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "verdicts not published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pareto: Vec<(String, i64)> = sqlx::query_as(
        "SELECT defect, COUNT(*) FROM findings WHERE clause IS NOT NULL GROUP BY defect",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(!pareto.is_empty(), "the test data has rejecting findings");
    let hours: Vec<(String, i64)> = sqlx::query_as(
        "SELECT substr(decided_at, 1, 13), COUNT(*) FROM verdicts GROUP BY substr(decided_at, 1, 13)",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();

    let reviews_store = store.clone();
    let runtime = tokio::runtime::Handle::current();
    let checks = tokio::task::spawn_blocking(move || {
        // No session: the UI sends to the login page, the API says 401.
        let (s, head, _) = get(port, "/", "");
        assert!(s == 303 && head.contains("location: /login"), "{s} {head}");
        let mut api = e2e::OpenApi::load();
        let (s, _, body) = get(port, "/api/v1/verdicts", "");
        assert_eq!(s, 401);
        api.check("/api/v1/verdicts", "get", s, &body);
        // Every response tells browsers not to sniff, frame or leak it, and a
        // body larger than any form or command is refused unread.
        let (_, head, _) = get(port, "/login", "");
        let head = head.to_ascii_lowercase();
        for h in [
            "x-content-type-options: nosniff",
            "x-frame-options: deny",
            "referrer-policy: same-origin",
            "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'",
            "frame-ancestors 'none'",
            "cache-control: no-store",
        ] {
            assert!(head.contains(h), "`{h}` in {head}");
        }
        // Nothing inline for that policy to block: style and script are files.
        let (_, _, page) = get(port, "/login", "");
        assert!(!page.contains("<style") && !page.contains("style=\""), "{page}");
        for asset in ["/assets/style.css", "/assets/review.js"] {
            let (s, head, body) = get(port, asset, "");
            assert!(s == 200 && !body.is_empty(), "{asset}: {s}");
            assert!(head.to_ascii_lowercase().contains("max-age=3600"), "{head}");
        }
        let big = "x".repeat(80 * 1024);
        let (s, _, _) = http_request(port, "POST", "/login", &[], "text/plain", &big);
        assert_eq!(s, 413, "an 80 kB body is refused");
        // A wrong password is refused without saying which part was wrong.
        let (s, _, body) = login(port, "name=ana&password=guess");
        assert_eq!(s, 401);
        assert!(body.contains("Wrong user name or password"));

        // A sign-in posted without the form's own token (login CSRF) is refused.
        let (s, _, body) = form(
            port,
            "/login",
            "",
            "name=ana&password=ana%27s+long+password",
        );
        assert!(
            s == 403 && body.contains("did not come from this appliance"),
            "{s}"
        );
        let (ana, csrf) = sign_in(port, "ana", "ana's long password");
        let (_, _, home) = get(port, "/", &ana);
        assert!(home.contains("Review inbox") && home.contains("All verdicts"));

        // Charts: the counts behind each bar are the database's.
        let (s, _, charts) = get(port, "/charts", &ana);
        assert_eq!(s, 200);
        for (defect, n) in &pareto {
            assert!(
                charts.contains(&format!("<title>{defect}: {n}</title>")),
                "Pareto bar of {defect}"
            );
        }
        for (hour, n) in &hours {
            let title = charts
                .split(&format!("<title>{hour}: "))
                .nth(1)
                .and_then(|t| t.split("</title>").next())
                .unwrap_or_else(|| panic!("no bar for {hour}"));
            let total: i64 = title
                .split(", ")
                .map(|part| part.split(' ').next().unwrap().parse::<i64>().unwrap())
                .sum();
            assert_eq!(total, *n, "{title}");
        }
        assert!(charts.contains(" ms, p95 "), "latency points");
        assert_eq!(get(port, "/charts", "").0, 303, "charts need a session");

        // Filters: FAIL only; SQL metacharacters are just values.
        let (s, _, fails) = get(port, "/?decision=FAIL", &ana);
        assert_eq!(s, 200);
        assert!(fails.contains(r#"class="FAIL""#) && !fails.contains(r#"<td class="PASS""#));
        for evil in [
            "/?station=x%27%20OR%20%271%27=%271",
            "/?defect=%27%3B%20DROP%20TABLE%20verdicts%3B--",
            "/?recipe=%22%29%20UNION%20SELECT%20*%20FROM%20users--",
        ] {
            let (s, _, page) = get(port, evil, &ana);
            assert_eq!(s, 200, "{evil}");
            assert!(
                page.contains("<tbody></tbody></table><"),
                "{evil} matched rows"
            );
        }
        let (s, _, listed) = get(
            port,
            "/api/v1/verdicts?station=x%27%20OR%20%271%27=%271",
            &mes,
        );
        assert_eq!(s, 200);
        api.check("/api/v1/verdicts", "get", s, &listed);
        assert_eq!(
            serde_json::from_str::<Value>(&listed).unwrap()["items"],
            serde_json::json!([])
        );
        let (s, _, bad) = get(port, "/api/v1/verdicts?decision=MAYBE", &mes);
        assert!(
            s == 400 && bad.contains("allowed: PASS, FAIL, REVIEW"),
            "{bad}"
        );
        api.check("/api/v1/verdicts", "get", s, &bad);
        let (s, _, missing) = get(port, "/api/v1/verdicts/no-such-verdict", &mes);
        assert_eq!(s, 404);
        api.check("/api/v1/verdicts/{id}", "get", s, &missing);

        // The MES token lists FAIL verdicts; open one with findings.
        let (s, _, listed) = get(port, "/api/v1/verdicts?decision=FAIL&limit=200", &mes);
        assert_eq!(s, 200);
        api.check("/api/v1/verdicts", "get", s, &listed);
        let listed: Value = serde_json::from_str(&listed).unwrap();
        let fail = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["findings"].as_i64().unwrap() > 0)
            .expect("a FAIL verdict with findings")
            .clone();
        let id = fail["id"].as_str().unwrap().to_string();
        let other = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .find(|o| *o != id)
            .expect("a second FAIL verdict");
        let (s, _, page) = get(port, &format!("/verdicts/{id}"), &ana);
        assert_eq!(s, 200);
        assert!(page.contains("<rect "), "the finding's box is drawn");
        assert!(
            page.contains("<blockquote>Clause "),
            "the violated clause is quoted"
        );
        assert!(page.contains("are permitted."), "quoted from the standard");
        let (s, _, detail) = get(port, &format!("/api/v1/verdicts/{id}"), &mes);
        api.check("/api/v1/verdicts/{id}", "get", s, &detail);
        let detail: Value = serde_json::from_str(&detail).unwrap();
        let sha = detail["verdict"]["image"]["sha256"]
            .as_str()
            .unwrap()
            .to_string();

        // Images: by content address only.
        assert_eq!(get(port, &format!("/images/{sha}"), &ana).0, 200);
        assert_eq!(get(port, &format!("/images/{sha}"), "").0, 401);
        // Thumbnails: a small JPEG, made on first request and kept; every
        // list shows them.
        let (s, head, _) = get(port, &format!("/images/{sha}/thumb"), &ana);
        assert_eq!(s, 200, "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: image/jpeg"), "{head}");
        assert_eq!(get(port, &format!("/images/{sha}/thumb"), "").0, 401);
        assert_eq!(get(port, &format!("/images/{}/thumb", "0".repeat(64)), &ana).0, 404);
        let kept = image::open(thumbs.join(format!("{sha}.jpg"))).expect("the thumbnail is kept");
        assert!(kept.width().max(kept.height()) <= 240, "{}x{}", kept.width(), kept.height());
        let (_, _, list) = get(port, "/", &ana);
        assert!(list.contains(&format!(r#"<img src="/images/{sha}/thumb""#)), "{list}");
        for evil in [
            "/images/..%2F..%2Fetc%2Fpasswd",
            "/images/../../etc/passwd",
            "/images/%2e%2e%2fappliance.db",
        ] {
            assert_eq!(get(port, evil, &ana).0, 404, "{evil}");
        }

        // Reviews: CSRF token required, operator role required.
        let review = "decision=PASS&wrong=0&reason=burr+is+a+casting+mark";
        let path = format!("/verdicts/{id}/review");
        assert_eq!(form(port, &path, &ana, review).0, 403, "no CSRF token");
        assert_eq!(
            form(port, &path, &ana, &format!("{review}&csrf=forged")).0,
            403
        );
        let (vic, vic_csrf) = sign_in(port, "vic", "vic's long password");
        assert_eq!(
            form(port, &path, &vic, &format!("{review}&csrf={vic_csrf}")).0,
            403,
            "viewer"
        );
        let (s, head, _) = form(port, &path, &ana, &format!("{review}&csrf={csrf}"));
        assert!(s == 303, "{s} {head}");
        let (_, _, page) = get(port, &format!("/verdicts/{id}"), &ana);
        assert!(
            page.contains("by ana (overridden): burr is a casting mark"),
            "the review is shown"
        );
        // The decision that stands is the review's, and the page says what
        // the model judged; corrections are in words, findings numbered from 1.
        assert!(
            page.contains(r#"class="PASS headline""#),
            "the standing decision is shown"
        );
        assert!(
            page.contains("Judged FAIL by the model · overridden to PASS by ana at "),
            "what the model judged is shown"
        );
        assert!(page.contains(") is wrong</li>") && page.contains("— finding 1 ("), "corrections in words");
        assert!(!page.contains("wrong_findings"), "no raw JSON");

        // The API: a viewer token may not review; a session needs X-CSRF-Token.
        let body = r#"{"decision":"FAIL","reason":"agree"}"#;
        let api_path = format!("/api/v1/verdicts/{other}/reviews");
        let (s, _, refused) = http_request(
            port,
            "POST",
            &api_path,
            &[format!("Authorization: Bearer {mes}")],
            "application/json",
            body,
        );
        assert_eq!(s, 403);
        api.check("/api/v1/verdicts/{id}/reviews", "post", s, &refused);
        let (s, _, refused) = http_request(
            port,
            "POST",
            &api_path,
            &[format!("Cookie: {ana}")],
            "application/json",
            body,
        );
        assert_eq!(s, 403);
        api.check("/api/v1/verdicts/{id}/reviews", "post", s, &refused);
        // A reviewer's defect name is bounded (a 10 kB one is refused).
        let long = format!(
            r#"{{"decision":"FAIL","reason":"missed one","corrections":{{"missed":[{{"defect":"{}","box_norm":[0.1,0.1,0.2,0.2]}}]}}}}"#,
            "d".repeat(10_000)
        );
        let (s, _, refused) = http_request(
            port,
            "POST",
            &api_path,
            &[format!("Cookie: {ana}"), format!("X-CSRF-Token: {csrf}")],
            "application/json",
            &long,
        );
        assert!(s == 400 && refused.contains("1 to 64 characters"), "{s} {refused}");
        api.check("/api/v1/verdicts/{id}/reviews", "post", s, &refused);
        let (s, _, created) = http_request(
            port,
            "POST",
            &api_path,
            &[format!("Cookie: {ana}"), format!("X-CSRF-Token: {csrf}")],
            "application/json",
            body,
        );
        assert_eq!(s, 201, "{created}");
        api.check("/api/v1/verdicts/{id}/reviews", "post", s, &created);
        let (s, _, reviewed) = get(port, "/api/v1/verdicts?reviewed=yes", &mes);
        api.check("/api/v1/verdicts", "get", s, &reviewed);
        let reviewed: Value = serde_json::from_str(&reviewed).unwrap();
        let items = reviewed["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        let latest = |v: &str| items.iter().find(|r| r["id"] == v).unwrap()["reviewed"].clone();
        assert_eq!(
            (latest(&id), latest(&other)),
            ("PASS".into(), "FAIL".into())
        );

        // Export for retraining: admins only.
        let export = |auth: Vec<String>| {
            http_request(
                port,
                "POST",
                "/api/v1/export",
                &auth,
                "application/json",
                "",
            )
        };
        let (s, _, refused) = export(vec![format!("Authorization: Bearer {mes}")]);
        assert_eq!(s, 403);
        api.check("/api/v1/export", "post", s, &refused);
        let (s, _, report) = export(vec![format!("Authorization: Bearer {admin}")]);
        assert_eq!(s, 200, "{report}");
        api.check("/api/v1/export", "post", s, &report);
        let (s, _, health) = e2e::http_request(
            port,
            "GET",
            "/api/v1/health",
            &[format!("Authorization: Bearer {mes}")],
            "application/json",
            "",
        );
        assert_eq!(s, 200, "{health}");
        api.check("/api/v1/health", "get", s, &health);
        // The reviews just recorded feed output consistency's third source.
        let (n, agreed): (i64, i64) = runtime
            .block_on(
                sqlx::query_as("SELECT COUNT(*), CAST(SUM(agrees) AS BIGINT) FROM reviews")
                    .fetch_one(reviews_store.pool()),
            )
            .unwrap();
        assert!(n >= 2, "{n} reviews");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (_, _, health) = e2e::http_request(
                port,
                "GET",
                "/api/v1/health",
                &[format!("Authorization: Bearer {mes}")],
                "application/json",
                "",
            );
            let h: Value = serde_json::from_str(&health).unwrap();
            let reviews = h["health"]["figures"][2]["sources"]
                .as_array()
                .and_then(|s| s.iter().find(|a| a["source"] == "reviews").cloned());
            if reviews.as_ref().is_some_and(|r| r["samples"] == n) {
                assert_eq!(reviews.unwrap()["agreed"], agreed);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{h}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let report: Value = serde_json::from_str(&report).unwrap();
        assert_eq!(report["records"], 2, "{report}");
        assert!(
            api.unchecked_successes().is_empty(),
            "documented but never checked: {:?}",
            api.unchecked_successes()
        );

        // Five failed sign-ins at one account from one address make that
        // address wait for that account, even with the right password; the
        // others behind the same address (a reverse proxy) are not locked out.
        let refused: Vec<u16> = (0..6)
            .map(|_| login(port, "name=vic&password=nope").0)
            .collect();
        assert_eq!(refused, vec![401, 401, 401, 401, 401, 429]);
        let (s, _, body) = login(port, "name=vic&password=vic%27s+long+password");
        assert!(s == 429 && body.contains("Too many failed sign-ins"), "{s}");
        let (s, _, _) = login(port, "name=ana&password=ana%27s+long+password");
        assert_eq!(s, 303, "another account from the same address");
        id
    })
    .await
    .unwrap();

    // Nothing was dropped or overwritten by the attempts above.
    let (verdicts, reviews): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM verdicts), (SELECT COUNT(*) FROM reviews)")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((verdicts, reviews), (PARTS as i64, 2));

    // Both reviews reached the MES on inspect/rev-1/review, the override
    // saying so.
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let (_, payload) = tokio::time::timeout(Duration::from_secs(10), reviews_heard.recv())
            .await
            .expect("each review is published")
            .unwrap();
        let m: Value = serde_json::from_slice(&payload).unwrap();
        e2e::assert_schema("review.v1", &m);
        heard.push(m);
    }
    let overridden: Vec<_> = heard.iter().filter(|m| m["overridden"] == true).collect();
    assert_eq!(overridden.len(), 1, "{heard:?}");
    assert_eq!(
        (
            overridden[0]["judged"].as_str(),
            overridden[0]["decision"].as_str(),
            overridden[0]["reviewer"].as_str()
        ),
        (Some("FAIL"), Some("PASS"), Some("ana"))
    );
    assert_eq!(overridden[0]["reason"], "burr is a casting mark");

    // The export, read by the fine-tuning toolchain itself.
    let out = dir.path().join("export");
    let r = store::export::export(&store, &out, "").await.unwrap();
    assert_eq!((r.records, r.without_image), (2, 0));
    let text = std::fs::read_to_string(out.join("reviewed.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let overridden = records
        .iter()
        .find(|r| r["verdict_id"] == checks.as_str())
        .unwrap();
    assert_eq!(overridden["decision"], "PASS");
    assert_eq!(overridden["reason"], "burr is a casting mark");
    assert!(out.join(overridden["image"].as_str().unwrap()).exists());
    let check = std::process::Command::new("python3")
        .current_dir(repo().join("models"))
        .args([
            "-c",
            "import sys; from toolchain.finetune import read_reviews; ex, words = read_reviews(sys.argv[1], 'x'); print(len(ex)); assert all(p.exists() for p, *_ in ex)",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "toolchain.finetune cannot read the export: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "2");
    let class: String = sqlx::query_scalar(
        "SELECT i.retention_class FROM images i JOIN verdicts v ON v.image_sha256 = i.sha256 WHERE v.id = $1",
    )
    .bind(&checks)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(class, "reviewed", "a reviewed image is kept longest");

    // One tap: a reason from review.reasons plus a remark, PASS, and on to
    // the oldest REVIEW part nobody has reviewed (or the inbox if none).
    let unreviewed: String = sqlx::query_scalar(
        "SELECT id FROM verdicts WHERE id NOT IN (SELECT verdict_id FROM reviews) ORDER BY id LIMIT 1",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let target = unreviewed.clone();
    let (page, location) = tokio::task::spawn_blocking(move || {
        let (ana, csrf) = sign_in(port, "ana", "ana's long password");
        let (_, _, page) = get(port, &format!("/verdicts/{target}"), &ana);
        let (status, head, _) = form(
            port,
            &format!("/verdicts/{target}/review"),
            &ana,
            &format!("csrf={csrf}&next=review&reason_choice=fixture+or+handling+mark%2C+not+a+defect&reason=seen+twice&decision=PASS"),
        );
        assert_eq!(status, 303, "{head}");
        let location = head
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap()
            .to_string();
        (page, location)
    })
    .await
    .unwrap();
    assert!(page.contains("Review with one tap"), "one-tap form shown");
    assert!(page.contains(r#"<option value="within tolerance">3. within tolerance</option>"#));
    assert!(page.contains(r#"class="tap PASS""#) && page.contains(r#"class="tap FAIL""#));
    let expected = match store::reviews::inbox(&store, 1).await.unwrap().first() {
        Some(next) => format!("/verdicts/{}", next.id),
        None => "/".to_string(),
    };
    assert_eq!(location, expected, "on to the next REVIEW part");
    let reason: String = sqlx::query_scalar("SELECT reason FROM reviews WHERE verdict_id = $1")
        .bind(&unreviewed)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(
        reason,
        "fixture or handling mark, not a defect — seen twice"
    );

    // Bulk from the inbox: the parts picked get the same review each.
    let picked: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM verdicts WHERE id NOT IN (SELECT verdict_id FROM reviews) ORDER BY id LIMIT 2",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let ids: String = picked.iter().map(|id| format!("&ids={id}")).collect();
    let statuses = tokio::task::spawn_blocking(move || {
        let (ana, csrf) = sign_in(port, "ana", "ana's long password");
        let body = format!("decision=FAIL&reason_choice=defect+confirmed{ids}");
        [
            form(port, "/reviews/bulk", &ana, &body).0,
            form(
                port,
                "/reviews/bulk",
                &ana,
                &format!("csrf={csrf}&decision=FAIL&reason_choice=defect+confirmed"),
            )
            .0,
            form(port, "/reviews/bulk", &ana, &format!("csrf={csrf}&{body}")).0,
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        statuses,
        [403, 400, 303],
        "no CSRF token; nothing picked; done"
    );
    for id in &picked {
        let (decision, reason): (String, String) =
            sqlx::query_as("SELECT decision, reason FROM reviews WHERE verdict_id = $1")
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(
            (decision.as_str(), reason.as_str()),
            ("FAIL", "defect confirmed")
        );
    }

    // A Chinese user: the choice is kept with the account (a new sign-in on
    // another tablet keeps it), every page speaks Chinese, and the only
    // English left is data (names, the standard, what people wrote, what
    // the configuration lists), read back from the JSON API.
    let verdict = unreviewed.clone();
    let (pages, data) = tokio::task::spawn_blocking(move || {
        let (ana, csrf) = sign_in(port, "ana", "ana's long password");
        let (s, head, _) = form(port, "/language", &ana, &format!("csrf={csrf}&language=zh"));
        assert_eq!(s, 303, "{head}");
        assert_eq!(
            form(port, "/language", &ana, "csrf=forged&language=zh").0,
            403
        );
        assert_eq!(
            form(port, "/language", &ana, &format!("csrf={csrf}&language=xx")).0,
            400
        );
        let (ana, _) = sign_in(port, "ana", "ana's long password");
        let mut data = String::new();
        for api in [
            "/api/v1/verdicts?limit=200".to_string(),
            format!("/api/v1/verdicts/{verdict}"),
            "/api/v1/health".to_string(),
            "/api/v1/line".to_string(),
        ] {
            data.push_str(&get(port, &api, &ana).2);
        }
        let pages: Vec<(String, (u16, String, String))> = [
            "/".to_string(),
            "/?decision=FAIL".to_string(),
            format!("/verdicts/{verdict}"),
            "/charts".to_string(),
            "/panel".to_string(),
            "/line".to_string(),
        ]
        .into_iter()
        .map(|p| {
            let got = get(port, &p, &ana);
            (p, got)
        })
        .collect();
        (pages, data)
    })
    .await
    .unwrap();
    let mut data_words: std::collections::HashSet<String> = words(&data);
    for (_, (_, _, page)) in &pages {
        // What the configuration lists (review reasons, recipes) is data.
        for option in page.split("<option value=\"").skip(1) {
            data_words.extend(words(option.split('"').next().unwrap_or_default()));
        }
    }
    data_words.extend(words("ana otto mes vic name x0 y0 x1 y1"));
    for (path, (status, _, page)) in &pages {
        assert_eq!(*status, 200, "{path}");
        assert!(page.contains(r#"<html lang="zh-CN">"#), "{path}");
        let left: Vec<String> = review_web::i18n::untranslated_words(page, &[])
            .into_iter()
            .filter(|w| !data_words.contains(w))
            .collect();
        assert!(left.is_empty(), "{path} left in English: {left:?}");
    }
    assert!(
        pages[0].1 .2.contains("全部判定"),
        "the list speaks Chinese"
    );
    assert!(
        pages[2].1 .2.contains("<pre lang=\"en\">"),
        "the English standard is marked as English on a Chinese page"
    );
    station.stop().await;
}

/// The words (ASCII letters) of `text`.
fn words(text: &str) -> std::collections::HashSet<String> {
    text.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

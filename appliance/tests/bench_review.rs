//! The review list benchmark runs end to end on a small store, and every
//! page it times is a real answer (no timing asserted here: figures come
//! from `appliance bench-review`).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_benchmark_times_real_pages() {
    let dir = tempfile::tempdir().unwrap();
    let report = appliance::bench_review::run(3000, 2, dir.path(), None, false)
        .await
        .unwrap();
    assert_eq!(report.verdicts, 3000);
    let rows = |q: &str| {
        report
            .pages
            .iter()
            .find(|p| p.query == q)
            .unwrap_or_else(|| panic!("{q} not timed"))
            .rows_on_page
    };
    assert_eq!(rows("/?"), 50);
    assert_eq!(rows("/?decision=FAIL"), 50);
    assert_eq!(rows("/?reviewed=yes"), 3, "one in a thousand is reviewed");
    assert_eq!(rows("/?defect=weld%20spatter"), 0);
    assert!(report.pages.iter().all(|p| p.median_ms > 0.0));
}

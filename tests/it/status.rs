//! `pacsbak status` (issue 15): "are we protected right now?" from the repository and
//! the journal: the newest restorable point against the RPO, copies per target, the
//! last verify, next runs; exit 1 when an RPO is missed.

use crate::faults::add_second_target;
use crate::json_outcomes::{has_faketime, pacsbak, pacsbak_with_clock};
use crate::sqlserver_jobs::sim_env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_are_we_protected() {
    let (_sim, env) = sim_env("full = \"0 1 * * SUN\"\nlog = \"*/15 * * * *\"").await;
    let cfg = env.cfg.config();
    for args in [
        &["backup", "db", "--policy", "t", "--type", "full"][..],
        &["backup", "db", "--policy", "t", "--type", "log"],
        &["backup", "folders", "--policy", "t"],
        &["verify"],
    ] {
        let (code, j, err) = pacsbak(&cfg, args).await;
        assert_eq!(code, 0, "{args:?}: {j}\n{err}");
    }
    let (code, j, err) = pacsbak(&cfg, &["status"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let p = &j["policies"][0];
    let db = &p["databases"][0];
    assert_eq!(db["database"], "PACS", "{j}");
    assert_eq!(db["rpo_met"], true, "{j}");
    assert!(
        db["newest"]["full"].is_string() && db["newest"]["log"].is_string(),
        "{j}"
    );
    assert!(db["age_minutes"].as_i64().unwrap() <= 5, "{j}");
    assert_eq!(p["last_verify"][1], true, "{j}");
    // `verify` read nothing back: this month's share is what verify --read-data reads.
    assert_eq!(p["read_back_this_month_percent"], 0.0, "{j}");
    let (code, v, err) = pacsbak(&cfg, &["verify", "--read-data"]).await;
    assert_eq!(code, 0, "{v}\n{err}");
    let (_, j, _) = pacsbak(&cfg, &["status"]).await;
    assert_eq!(
        j["policies"][0]["read_back_this_month_percent"], 100.0,
        "{j}"
    );
    assert!(p["next_runs"]["log backups"].is_string(), "{j}");
    assert!(p["folders"][0]["age_hours"].is_number(), "{j}");

    // A second target that holds nothing yet: the copy is missing there.
    add_second_target(&cfg);
    let (code, j, err) = pacsbak(&cfg, &["repo", "init", "--target", "second"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let (_, j, _) = pacsbak(&cfg, &["status"]).await;
    assert!(
        j["policies"][0]["databases"][0]["lag_minutes"]["second"].is_null(),
        "{j}"
    );
    let (code, j, err) = pacsbak(&cfg, &["backup", "db", "--policy", "t", "--type", "full"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let (_, j, _) = pacsbak(&cfg, &["status"]).await;
    assert_eq!(
        j["policies"][0]["databases"][0]["lag_minutes"]["second"], 0,
        "{j}"
    );

    // A day later with nothing new: the RPO (240 minutes) is missed; exit 1.
    if !has_faketime() {
        println!(
            "skipped: the RPO half of status_answers_are_we_protected: faketime is not installed"
        );
        return;
    }
    let (code, j, _) = pacsbak_with_clock(&cfg, Some("+1d"), &["status"]).await;
    assert_eq!(code, 1, "{j}");
    assert_eq!(j["policies"][0]["databases"][0]["rpo_met"], false, "{j}");
    assert!(j.to_string().contains("RPO missed"), "{j}");
}

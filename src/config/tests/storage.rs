//! The broker's storage URLs.

use super::*;

#[test]
fn postgres_urls_never_show_their_password() {
    let url = PostgresUrl::parse("postgres://sluice:s3cret@127.0.0.1:5432/broker").unwrap();
    assert_eq!(
        url.to_string(),
        "postgres://sluice:****@127.0.0.1:5432/broker"
    );
    assert!(!format!("{url:?}").contains("s3cret"));
    assert_eq!(url.connect_url().unwrap().password(), Some("s3cret"));
    let alias = PostgresUrl::parse("postgresql://sluice@db.local/broker").unwrap();
    assert_eq!(alias.connect_url().unwrap().scheme(), "postgres");
}

#[test]
fn storage_urls_that_are_not_postgres_are_refused() {
    let err = PostgresUrl::parse("mysql://a:hidden@host/db").unwrap_err();
    assert!(
        err.contains("expected sqlite, memory or a postgres:// URL"),
        "{err}"
    );
    assert!(!err.contains("hidden"), "{err}");
    assert!(PostgresUrl::parse("postgres:///db").is_err());
    assert!(PostgresUrl::parse("sqlite").is_err());
}

#[test]
fn a_postgres_url_is_a_storage() {
    let config = parse(
        "embedded:\n  storage: postgres://sluice@127.0.0.1:5432/broker\n",
        "test.yaml",
    )
    .unwrap();
    assert_eq!(
        config.embedded.storage,
        Storage::Postgres(PostgresUrl::parse("postgres://sluice@127.0.0.1:5432/broker").unwrap())
    );
    assert_eq!(config.embedded.storage.kind(), "postgres");
    assert_eq!(
        config.embedded.storage.to_string(),
        "postgres://sluice@127.0.0.1:5432/broker"
    );
}

#[test]
fn a_storage_url_that_is_not_postgres_is_refused_without_its_password() {
    let text = "embedded:\n  storage: mysql://root:hunter2@db/broker\n";
    let found = problems(text);
    expect(
        &found,
        text,
        "embedded.storage",
        "mysql://",
        "expected sqlite, memory or a postgres:// URL",
    );
    assert!(
        found.iter().all(|p| !p.message.contains("hunter2")),
        "{found:?}"
    );
}

//! D1 migrations as diagnose judges them: which of the code's migrations the
//! database has not applied, and the command that applies them for an
//! environment (`development` is the local database of `scripts/dev.sh`).

/// The migrations in `expected` (file names, as wrangler records them) that
/// are not in `applied`, in order.
pub fn missing<'a>(applied: &[String], expected: &[&'a str]) -> Vec<&'a str> {
    expected.iter().copied().filter(|m| !applied.iter().any(|a| a == m)).collect()
}

/// The wrangler command that applies the migrations for `environment`.
pub fn apply_command(environment: &str) -> String {
    match environment {
        "" | "development" => "npx wrangler d1 migrations apply DB --local --persist-to .wrangler/state".into(),
        env => format!("npx wrangler d1 migrations apply DB --remote --env {env}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing_and_how_to_apply_it() {
        let expected = ["0001_init.sql", "0003_monitoring.sql"];
        assert_eq!(missing(&["0001_init.sql".into()], &expected), vec!["0003_monitoring.sql"]);
        assert_eq!(missing(&[], &expected), expected.to_vec());
        assert!(missing(&["0001_init.sql".into(), "0003_monitoring.sql".into()], &expected).is_empty());
        assert_eq!(apply_command("production"), "npx wrangler d1 migrations apply DB --remote --env production");
        assert_eq!(apply_command("development"), "npx wrangler d1 migrations apply DB --local --persist-to .wrangler/state");
        assert_eq!(apply_command("staging"), "npx wrangler d1 migrations apply DB --remote --env staging");
    }
}

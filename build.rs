//! Build-time work: stamp the version, git commit and build time that
//! `/api/health` reports; embed the web pages (web/) with content-hash ETags,
//! their JavaScript and CSS minified; record the migrations so diagnose can
//! tell which ones D1 lacks.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// An asset as shipped: JavaScript and CSS minified by the project's esbuild
/// (installed by scripts/setup.sh from the lockfile); as written when it is
/// not there (a bare `cargo test`), which changes nothing but the size.
fn shipped(name: &str, source: Vec<u8>) -> Vec<u8> {
    let loader = match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("js") => "js",
        Some("css") => "css",
        _ => return source,
    };
    let esbuild = Path::new("node_modules/.bin/esbuild");
    if !esbuild.exists() {
        return source;
    }
    let child = Command::new(esbuild)
        .args(["--minify", &format!("--loader={loader}"), "--log-level=error"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else { return source };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&source);
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() && !out.stdout.is_empty() => out.stdout,
        _ => source,
    }
}

fn main() {
    let commit = std::env::var("GIT_COMMIT").ok().or_else(|| git(&["rev-parse", "--short=12", "HEAD"])).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    println!("cargo:rustc-env=BUILD_TIME={secs}");
    for git_file in [".git/HEAD", ".git/index", ".git/refs/heads", ".git/packed-refs"] {
        println!("cargo:rerun-if-changed={git_file}");
    }

    let out_dir = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());

    // Web assets: (name, bytes, content type, etag).
    let mut table = String::from("pub static ASSETS: &[(&str, &[u8], &str, &str)] = &[\n");
    for (name, content_type) in [
        ("index.html", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("errors.js", "text/javascript; charset=utf-8"),
        ("admin.html", "text/html; charset=utf-8"),
        ("admin.js", "text/javascript; charset=utf-8"),
        ("admin.css", "text/css; charset=utf-8"),
        ("billing.js", "text/javascript; charset=utf-8"),
        ("billing.css", "text/css; charset=utf-8"),
    ] {
        let path = Path::new("web").join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = shipped(name, fs::read(&path).unwrap_or_default());
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        let out = Path::new(&out_dir).join(format!("web-{name}"));
        let _ = fs::write(&out, &bytes);
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?}), {content_type:?}, \"\\\"{:016x}\\\"\"),\n",
            out.display().to_string(),
            h.finish()
        ));
    }
    table.push_str("];\n");
    let _ = fs::write(Path::new(&out_dir).join("assets.rs"), table);

    // The migration file names, in order, as wrangler records them.
    println!("cargo:rerun-if-changed=migrations");
    let mut names: Vec<String> = fs::read_dir("migrations")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".sql")).collect())
        .unwrap_or_default();
    names.sort();
    let _ = fs::write(Path::new(&out_dir).join("migrations.rs"), format!("pub const MIGRATIONS: &[&str] = &{names:?};\n"));
}

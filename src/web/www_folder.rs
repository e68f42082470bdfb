//! The operator's own pages (`www_folder`, spec 1.2): a directory of static files that
//! replaces the built-in home, info and privacy pages. It is read once, when the site is
//! made, into memory and bounded, so a request never touches the file system: no path
//! from a client is ever joined to a directory, and nothing changes under a reader.

use std::collections::HashMap;
use std::path::Path;

/// Most files taken from the folder.
pub const MAX_FILES: usize = 1000;
/// Largest file taken (bigger ones are skipped with a warning).
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Most bytes taken in all.
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// Deepest directory level read.
const MAX_DEPTH: usize = 8;

/// The files of a `www_folder`, by URL path (`/index.html`, `/img/logo.png`).
#[derive(Debug, Clone, Default)]
pub struct WwwFolder {
    files: HashMap<String, (&'static str, Vec<u8>)>,
}

impl WwwFolder {
    /// Reads `dir` within the bounds above: regular files only (symbolic links and
    /// hidden names are skipped), names of printable ASCII without `%`, `?` or `#`.
    pub fn load(dir: &Path) -> std::io::Result<WwwFolder> {
        let mut folder = WwwFolder::default();
        let mut total = 0u64;
        let mut pending = vec![(dir.to_path_buf(), String::new(), 0usize)];
        while let Some((path, prefix, depth)) = pending.pop() {
            for entry in std::fs::read_dir(&path)? {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.starts_with('.')
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'?' | b'#' | b'\\'))
                {
                    continue;
                }
                let kind = entry.file_type()?;
                let url = format!("{prefix}/{name}");
                if kind.is_dir() && depth < MAX_DEPTH {
                    pending.push((entry.path(), url, depth + 1));
                } else if kind.is_file() {
                    let size = entry.metadata()?.len();
                    if size > MAX_FILE_BYTES
                        || total + size > MAX_TOTAL_BYTES
                        || folder.files.len() >= MAX_FILES
                    {
                        tracing::warn!(file = %url, "www_folder: file skipped (over the bounds)");
                        continue;
                    }
                    let bytes = std::fs::read(entry.path())?;
                    total += bytes.len() as u64;
                    folder.files.insert(url, (content_type(&name), bytes));
                }
            }
        }
        Ok(folder)
    }

    /// The file for a request path: `/` and directory paths mean their `index.html`,
    /// `/info` means `/info.html`.
    pub fn get(&self, path: &str) -> Option<(&'static str, &[u8])> {
        let candidates = [
            path.to_string(),
            format!("{}/index.html", path.trim_end_matches('/')),
            format!("{path}.html"),
        ];
        candidates
            .iter()
            .find_map(|p| self.files.get(p))
            .map(|(t, b)| (*t, b.as_slice()))
    }

    /// How many files were taken.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the folder had no file to serve.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The `Content-Type` of a file by its extension.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_served_from_memory_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>mine</h1>").unwrap();
        std::fs::write(dir.path().join("info.html"), "info").unwrap();
        std::fs::create_dir(dir.path().join("img")).unwrap();
        std::fs::write(dir.path().join("img/logo.svg"), "<svg/>").unwrap();
        std::fs::write(dir.path().join(".secret"), "no").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let f = WwwFolder::load(dir.path()).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f.get("/").unwrap().1, b"<h1>mine</h1>");
        assert_eq!(f.get("/info").unwrap().1, b"info");
        assert_eq!(f.get("/img/logo.svg").unwrap().0, "image/svg+xml");
        for hostile in [
            "/.secret",
            "/passwd",
            "/../etc/passwd",
            "/img/../index.html",
            "//etc",
        ] {
            assert!(f.get(hostile).is_none(), "{hostile}");
        }
    }
}

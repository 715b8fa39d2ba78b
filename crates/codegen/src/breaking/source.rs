//! Where the older schema set comes from (a folder, or a git revision read with `git show`),
//! and where a change sits in the new set's files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Location, Side};
use crate::Error;

/// The older schema set, ready to load.
#[derive(Debug)]
pub struct Baseline {
    /// How reports name it: the folder, or `REV:path/in/repo`.
    pub label: String,
    dir: PathBuf,
    /// Keeps the files taken out of git alive while the set is read.
    _checkout: Option<tempfile::TempDir>,
}

impl Baseline {
    /// The folder holding the older set's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Finds the older version of the set in `dir`: `against` is a folder if one exists at that
/// path; otherwise a git revision (a branch, tag or commit) of the repository `dir` is in, whose
/// files at the same path are taken out with `git show`; or `REV:PATH`, the folder PATH (from
/// the repository root) of a revision of the repository the current folder is in. `None` when the revision holds
/// no file at that path (the set is newer than the revision).
pub fn load_baseline(dir: &Path, against: &str) -> Result<Option<Baseline>, Error> {
    let folder = Path::new(against);
    if folder.is_dir() {
        return Ok(Some(Baseline {
            label: against.to_owned(),
            dir: folder.to_owned(),
            _checkout: None,
        }));
    }
    // `REV:PATH` names the set's folder inside the revision (from the repository root of the
    // current folder); a plain `REV` means the same path as `dir` in `dir`'s repository.
    let (repo, rev, path) = match against.split_once(':') {
        Some((rev, path)) => (Path::new("."), rev, Some(path.trim_matches('/'))),
        None => (dir, against, None),
    };
    let fail = |message: String| Error::schema(dir, message);
    let git = |args: &[&str]| -> Result<Vec<u8>, Error> {
        let output = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .map_err(|e| fail(format!("cannot run git: {e}")))?;
        if !output.status.success() {
            return Err(fail(format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(output.stdout)
    };
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).trim_end().to_owned();
    let commit = git(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{rev}^{{commit}}"),
    ])
    .map_err(|_| {
        fail(format!(
            "--against {against:?} is neither a folder nor a git revision (REV or REV:PATH) of the repository at {}",
            repo.display()
        ))
    })?;
    let commit = text(commit);
    let prefix = match path {
        Some("") => String::new(),
        Some(path) => format!("{path}/"),
        None => text(git(&["rev-parse", "--show-prefix"])?),
    };
    let listing = git(&["ls-tree", "-r", "-z", "--name-only", "--full-tree", &commit])?;
    let checkout =
        tempfile::tempdir().map_err(|e| fail(format!("cannot make a temporary folder: {e}")))?;
    let mut count = 0;
    for path in listing.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(path);
        let Some(relative) = path.strip_prefix(prefix.as_str()) else {
            continue;
        };
        if !relative.ends_with(".json") {
            continue;
        }
        let bytes = git(&["show", &format!("{commit}:{path}")])?;
        let target = checkout.path().join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&target, bytes).map_err(|e| Error::io(&target, e))?;
        count += 1;
    }
    let shown = if prefix.is_empty() {
        ".".to_owned()
    } else {
        prefix.trim_end_matches('/').to_owned()
    };
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(Baseline {
        label: format!("{rev}:{shown}"),
        dir: checkout.path().to_owned(),
        _checkout: Some(checkout),
    }))
}

/// Places locations in the new set's files.
pub(super) struct LineIndex {
    dir: String,
    /// File name to its lines.
    files: BTreeMap<String, Vec<String>>,
    /// Definition name to the file holding it.
    defs: BTreeMap<String, String>,
    first: String,
}

impl LineIndex {
    pub(super) fn new(side: &Side) -> Self {
        let mut files = BTreeMap::new();
        let mut defs = BTreeMap::new();
        for file in &side.set.files {
            for def in &file.defs {
                defs.insert(def.clone(), file.name.clone());
            }
        }
        let names = side.set.files.iter().map(|f| f.name.clone()).chain(
            [
                "close-codes.json",
                "error-codes.json",
                "defaults.json",
                "rules.json",
                "endpoints.json",
                "channels.json",
            ]
            .map(str::to_owned),
        );
        for name in names {
            if let Ok(text) = std::fs::read_to_string(side.dir.join(&name)) {
                files.insert(name, text.lines().map(str::to_owned).collect());
            }
        }
        Self {
            dir: side.set.label.trim_end_matches('/').to_owned(),
            first: side
                .set
                .files
                .first()
                .map(|f| f.name.clone())
                .unwrap_or_default(),
            files,
            defs,
        }
    }

    /// The file (as `label/name`) and 1-based line of a location.
    pub(super) fn place(&self, at: &Location) -> (String, usize) {
        let (name, line) = match at {
            Location::Def { def, path } => match self.defs.get(def) {
                Some(name) => {
                    let start = self.find(name, 0, &format!("\"{def}\":"));
                    let end = self.def_end(name, start);
                    let mut line = start;
                    for segment in path.iter().filter(|s| *s != "[]") {
                        let next = self.find(name, line, &format!("\"{segment}\":"));
                        if next < end {
                            line = next;
                        }
                    }
                    (name.clone(), line)
                }
                None => (self.first.clone(), 0),
            },
            Location::Row { file, needle, .. } => ((*file).to_owned(), self.find(file, 0, needle)),
        };
        (format!("{}/{name}", self.dir), line + 1)
    }

    /// The index of the line where the definition after the one starting at `start` starts
    /// (or the end of the file), so a member is looked for inside its own definition only.
    fn def_end(&self, file: &str, start: usize) -> usize {
        let Some(lines) = self.files.get(file) else {
            return start;
        };
        let keys: Vec<String> = self
            .defs
            .iter()
            .filter(|(_, f)| f.as_str() == file)
            .map(|(d, _)| format!("\"{d}\":"))
            .collect();
        lines
            .iter()
            .enumerate()
            .skip(start + 1)
            .find(|(_, l)| keys.iter().any(|k| l.trim_start().starts_with(k.as_str())))
            .map_or(lines.len(), |(i, _)| i)
    }

    /// The 0-based index of the first line at or after `from` holding `needle`, or `from`.
    fn find(&self, file: &str, from: usize, needle: &str) -> usize {
        self.files
            .get(file)
            .and_then(|lines| {
                lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, l)| l.contains(needle))
                    .map(|(i, _)| i)
            })
            .unwrap_or(from)
    }
}

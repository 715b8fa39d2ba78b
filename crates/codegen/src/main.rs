//! `ferry-codegen`: generate Ferry's Rust and TypeScript types, constants and protocol reference
//! from JSON Schema, and check that what is checked in is up to date.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ferry_codegen::typescript::TypeScriptOptions;
use ferry_codegen::{Options, SchemaSet, generate, rust::RustOptions};

/// Generate Ferry's Rust and TypeScript types, constants and protocol reference from JSON
/// Schema.
///
/// Without --schema, works on this repository: schema/ into generated/, the example
/// application schema/example-app/ into generated/example-app/ and the conformance adapter
/// contract schema/conformance/ into generated/conformance/. With --schema and --out, works
/// on one schema set, for example an application's own channel payload schemas.
#[derive(Parser)]
#[command(name = "ferry-codegen", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the generated files (only files whose content changes are rewritten).
    Generate(Target),
    /// Regenerate in memory and fail, printing a unified diff, when the files on disk differ
    /// or the schema breaks a lint. Exit codes: 0 up to date, 1 stale, 2 invalid schema or I/O
    /// error.
    Check(Target),
    /// Run the schema lints only.
    Lint(Target),
    /// Judge every change against an older version of the schema by the direction its
    /// message travels. Exit codes: 0 nothing breaks (or every breaking change is declared in
    /// compatibility.json), 1 an undeclared breaking change, 2 cannot run.
    Breaking(BreakingArgs),
}

#[derive(Args)]
struct BreakingArgs {
    /// The older version: a folder holding the older schema set; a git revision (branch, tag,
    /// commit, `origin/main`) whose files at the same path are read with `git show`; or
    /// `REV:PATH`, a folder of a revision of the current folder's repository (PATH from its
    /// root), for a set that lives outside the repository.
    #[arg(long, value_name = "DIR | REV")]
    against: String,
    /// One schema set folder (an application's channel payloads, say). Without it: schema/,
    /// schema/example-app/ and schema/conformance/ of this repository.
    #[arg(long, env = "FERRY_CODEGEN_SCHEMA")]
    schema: Option<PathBuf>,
    /// How to print the changes.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Output formats of `breaking`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// A table for people.
    Table,
    /// One JSON document: every set with its changes.
    Json,
    /// GitHub Actions annotations (`::error file=...,line=...::`).
    Github,
}

#[derive(Args)]
struct Target {
    /// A schema set folder: *.schema.json files, optional tables and a vectors/ folder.
    #[arg(long, env = "FERRY_CODEGEN_SCHEMA", requires = "out")]
    schema: Option<PathBuf>,
    /// Where the generated files go (rust/, typescript/, docs/, schema/ below it).
    #[arg(long, env = "FERRY_CODEGEN_OUT", requires = "schema")]
    out: Option<PathBuf>,
    /// The Rust path of ferry-protocol's runtime support (bounded numbers, optional members), as the generated code names it.
    #[arg(
        long,
        env = "FERRY_CODEGEN_RUNTIME_PATH",
        default_value = "::ferry_protocol::runtime"
    )]
    runtime_path: String,
    /// The npm name of the generated TypeScript package (with --schema; default
    /// @ferry-app/<schema folder name>).
    #[arg(long, env = "FERRY_CODEGEN_PACKAGE_NAME", requires = "schema")]
    package_name: Option<String>,
    /// The npm dependency specifier of @ferry/validator in the generated package.json (with
    /// --schema): a version range, or file:PATH to a checkout's clients/typescript/packages/validator.
    #[arg(
        long,
        env = "FERRY_CODEGEN_VALIDATOR",
        requires = "schema",
        default_value = "^0.1.0"
    )]
    validator: String,
}

/// One schema set and where its output goes.
struct Job {
    schema: PathBuf,
    out: PathBuf,
    runtime_path: String,
    typescript: TypeScriptOptions,
}

impl Target {
    fn jobs(&self) -> Result<Vec<Job>> {
        if let (Some(schema), Some(out)) = (&self.schema, &self.out) {
            return Ok(vec![Job {
                schema: schema.clone(),
                out: out.clone(),
                runtime_path: self.runtime_path.clone(),
                typescript: TypeScriptOptions {
                    package_name: self.package_name.clone(),
                    validator: self.validator.clone(),
                },
            }]);
        }
        if !Path::new("schema").is_dir() {
            bail!(
                "no schema/ folder here: run from the root of the Ferry repository, or pass --schema DIR --out DIR"
            );
        }
        Ok(vec![
            Job {
                schema: "schema".into(),
                out: "generated".into(),
                typescript: TypeScriptOptions::in_repository("generated"),
                runtime_path: "crate::runtime".into(),
            },
            Job {
                schema: "schema/example-app".into(),
                out: "generated/example-app".into(),
                typescript: TypeScriptOptions::in_repository("generated/example-app"),
                runtime_path: self.runtime_path.clone(),
            },
            Job {
                schema: "schema/conformance".into(),
                out: "generated/conformance".into(),
                typescript: TypeScriptOptions::in_repository("generated/conformance"),
                runtime_path: self.runtime_path.clone(),
            },
        ])
    }
}

fn load(job: &Job) -> Result<(SchemaSet, Options)> {
    let label = job.schema.to_string_lossy().replace('\\', "/");
    let set = SchemaSet::load(&job.schema, &label)
        .with_context(|| format!("cannot load the schema set {}", job.schema.display()))?;
    let options = Options {
        rust: RustOptions {
            runtime_path: job.runtime_path.clone(),
        },
        typescript: job.typescript.clone(),
    };
    Ok((set, options))
}

fn breaking(args: &BreakingArgs) -> Result<ExitCode> {
    let explicit = args.schema.is_some();
    let sets: Vec<(PathBuf, String)> = match &args.schema {
        Some(dir) => vec![(dir.clone(), args.against.clone())],
        None => {
            if !Path::new("schema").is_dir() {
                bail!(
                    "no schema/ folder here: run from the root of the Ferry repository, or pass --schema DIR"
                );
            }
            // A folder baseline stands for schema/; the application sets sit below it.
            let below = |sub: &str| {
                if Path::new(&args.against).is_dir() {
                    Path::new(&args.against).join(sub).display().to_string()
                } else if args.against.contains(':') {
                    format!("{}/{sub}", args.against.trim_end_matches('/'))
                } else {
                    args.against.clone()
                }
            };
            vec![
                ("schema".into(), args.against.clone()),
                ("schema/example-app".into(), below("example-app")),
                ("schema/conformance".into(), below("conformance")),
            ]
        }
    };
    let mut reports = Vec::new();
    for (dir, against) in &sets {
        let label = dir.to_string_lossy().replace('\\', "/");
        let older_folder = Path::new(&args.against).is_dir();
        if !explicit && older_folder && !Path::new(against).is_dir() {
            eprintln!("{label}: not in {}, nothing to compare", args.against);
            continue;
        }
        let report = ferry_codegen::breaking::check(dir, &label, against)
            .with_context(|| format!("cannot compare {} with {against}", dir.display()))?;
        match report {
            Some(report) => reports.push(report),
            None if explicit => bail!("{against} holds no version of {label}"),
            None => eprintln!("{label}: not in {against}, nothing to compare"),
        }
    }
    let text = match args.format {
        Format::Table => ferry_codegen::breaking::render_table(&reports),
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&reports)?),
        Format::Github => ferry_codegen::breaking::render_github(&reports),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    let failures: usize = reports.iter().map(|r| r.failures()).sum();
    if failures > 0 {
        eprintln!(
            "{failures} breaking change(s) not declared: raise the major version in compatibility.json, or allow each with a reason"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Breaking(args) => breaking(&args),
        Command::Generate(target) => {
            for job in target.jobs()? {
                let (set, options) = load(&job)?;
                let output = generate(&set, &options)?;
                let changed = output.diff(&job.out)?.len();
                output.write(&job.out)?;
                eprintln!(
                    "generated {} -> {}: {} files, {changed} changed",
                    job.schema.display(),
                    job.out.display(),
                    output.files.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(target) => {
            let mut stale = 0;
            let mut stdout = std::io::stdout().lock();
            for job in target.jobs()? {
                let (set, options) = load(&job)?;
                let diffs = generate(&set, &options)?.diff(&job.out)?;
                for diff in &diffs {
                    writeln!(stdout, "{}", diff.unified)?;
                }
                if diffs.is_empty() {
                    eprintln!(
                        "{} is up to date with {}",
                        job.out.display(),
                        job.schema.display()
                    );
                } else {
                    let files: Vec<String> =
                        diffs.iter().map(|d| d.path.display().to_string()).collect();
                    eprintln!(
                        "{} is stale: {} differ from what {} generates ({})",
                        job.out.display(),
                        diffs.len(),
                        job.schema.display(),
                        files.join(", ")
                    );
                }
                stale += diffs.len();
            }
            if stale > 0 {
                eprintln!("run `cargo run -p ferry-codegen -- generate` and commit the result");
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Lint(target) => {
            let mut total = 0;
            for job in target.jobs()? {
                let (set, _) = load(&job)?;
                let lints = ferry_codegen::lint(&set);
                for lint in &lints {
                    eprintln!("{}: {lint}", job.schema.display());
                }
                total += lints.len();
            }
            if total > 0 {
                bail!("{total} lint(s) failed");
            }
            eprintln!("no lint failed");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ferry-codegen: {error:#}");
            ExitCode::from(2)
        }
    }
}

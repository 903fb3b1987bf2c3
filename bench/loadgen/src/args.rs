//! A tiny `--name value` / `--flag` parser, so the benchmark needs no CLI framework.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result, bail};

#[derive(Debug, Default)]
pub struct Args {
    options: BTreeMap<String, Option<String>>,
    positional: Vec<String>,
}

/// Options that take no value.
const FLAGS: &[&str] = &["unique-keys"];

impl Args {
    pub fn parse(argv: Vec<String>) -> Result<Self> {
        let mut args = Args::default();
        let mut it = argv.into_iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                args.positional.push(a);
                continue;
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None if FLAGS.contains(&name) => (name.to_owned(), None),
                None => {
                    let v = it
                        .next()
                        .with_context(|| format!("--{name} needs a value"))?;
                    (name.to_owned(), Some(v))
                }
            };
            if args.options.insert(name.clone(), value).is_some() {
                bail!("--{name} given twice");
            }
        }
        Ok(args)
    }

    pub fn flag(&mut self, name: &str) -> bool {
        self.options.remove(name).is_some()
    }

    pub fn opt<T: FromStr>(&mut self, name: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        match self.options.remove(name) {
            None => Ok(None),
            Some(None) => bail!("--{name} needs a value"),
            Some(Some(v)) => v
                .parse()
                .map(Some)
                .map_err(|e| anyhow::anyhow!("--{name} {v:?}: {e}")),
        }
    }

    pub fn or<T: FromStr>(&mut self, name: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self.opt(name)?.unwrap_or(default))
    }

    pub fn required<T: FromStr>(&mut self, name: &str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.opt(name)?
            .with_context(|| format!("--{name} is required"))
    }

    pub fn duration_or(&mut self, name: &str, default: Duration) -> Result<Duration> {
        match self.opt::<String>(name)? {
            None => Ok(default),
            Some(v) => parse_duration(&v).with_context(|| format!("--{name} {v:?}")),
        }
    }

    pub fn positional(&mut self) -> Option<String> {
        (!self.positional.is_empty()).then(|| self.positional.remove(0))
    }

    /// Fails on anything not consumed, so a typo never silently runs the default.
    pub fn finish(self) -> Result<()> {
        if let Some(name) = self.options.keys().next() {
            bail!("unknown option --{name}");
        }
        if let Some(p) = self.positional.first() {
            bail!("unexpected argument {p:?}");
        }
        Ok(())
    }
}

/// `250ms`, `2s`, `1.5s`, `1m`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().context("expected a number with ms, s or m")?;
    let secs = match unit {
        "ms" => n / 1e3,
        "" | "s" => n,
        "m" => n * 60.0,
        other => bail!("unknown unit {other:?}: use ms, s or m"),
    };
    if !secs.is_finite() || secs < 0.0 {
        bail!("not a valid duration");
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_durations() {
        let argv = [
            "--url",
            "http://x",
            "--unique-keys",
            "--concurrency=4",
            "pos",
        ];
        let mut a = Args::parse(argv.iter().map(|s| s.to_string()).collect()).unwrap();
        assert_eq!(a.required::<String>("url").unwrap(), "http://x");
        assert!(a.flag("unique-keys"));
        assert_eq!(a.or("concurrency", 1usize).unwrap(), 4);
        assert_eq!(
            a.duration_or("warmup", Duration::from_secs(2)).unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(a.positional().as_deref(), Some("pos"));
        a.finish().unwrap();
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("3h").is_err());
        let mut a = Args::parse(vec!["--bogus".into(), "1".into()]).unwrap();
        assert!(a.flag("unique-keys").eq(&false));
        assert!(a.finish().is_err());
    }
}

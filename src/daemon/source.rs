//! Where the config comes from (file, URL, Consul), read again on SIGHUP.

use super::*;

/// Where the config comes from, so SIGHUP can read it again.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file, or the URL of a remote source (for messages and the format).
    pub path: PathBuf,
    /// `from-url` / `from-consul`: where to fetch the text instead of `path`.
    pub remote: Option<Remote>,
    pub format: Format,
    pub env_vars: bool,
}

impl Source {
    /// Read, substitute, parse and validate; every problem as one line.
    pub fn load(&self) -> Result<Loaded, Vec<String>> {
        let text = match &self.remote {
            Some(r) => r.fetch_blocking().map_err(|e| vec![e])?,
            None => self.read_file()?,
        };
        self.parse(text)
    }

    fn read_file(&self) -> Result<String, Vec<String>> {
        std::fs::read_to_string(&self.path)
            .map_err(|e| vec![format!("{}: {e}", self.path.display())])
    }

    /// [`Self::read_file`], refusing an empty file (see [`Self::load_async`]).
    fn read_file_for_reload(&self) -> Result<String, Vec<String>> {
        let text = self.read_file()?;
        if text.trim().is_empty() {
            return Err(vec![format!(
                "{}: empty (being written?); a reload needs the whole config",
                self.path.display()
            )]);
        }
        Ok(text)
    }

    /// [`Self::load`] inside the runtime (SIGHUP). Reading the file and
    /// parsing (which resolves host names in `bind`s, a blocking
    /// getaddrinfo) run on the blocking pool: on a single-CPU box the
    /// runtime has one thread, and a slow file system or resolver would
    /// stall every connection meanwhile.
    ///
    /// An empty text is refused here, though a first start takes it: a
    /// reload that meets a file while it is being written (truncated, not
    /// yet filled) would otherwise close every server.
    pub async fn load_async(&self) -> Result<Loaded, Vec<String>> {
        let text = match &self.remote {
            Some(r) => Some(r.fetch().await.map_err(|e| vec![e])?),
            None => None,
        };
        let source = self.clone();
        let work = move || {
            // A fetched text was checked for emptiness by the fetch.
            let text = match text {
                Some(text) => text,
                None => source.read_file_for_reload()?,
            };
            source.parse(text)
        };
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| Err(vec![format!("reading the config failed: {e}")]))
    }

    fn parse(&self, text: String) -> Result<Loaded, Vec<String>> {
        // Said with the errors: an empty value, or a `${NAME}` left as
        // written, is often what they are about.
        let (text, notes) = if self.env_vars {
            let unset = config::unset_env(&text).into_iter();
            let notes =
                unset.map(|n| format!("-e: ${{{n}}} is not set; it was replaced by nothing"));
            (config::substitute_env(&text), notes.collect())
        } else {
            let refs = config::env_refs(&text).into_iter();
            let notes = refs.map(|n| {
                format!("${{{n}}} was not replaced: environment variables are substituted only with -e (--use-config-env-vars)")
            });
            (text, notes.collect::<Vec<_>>())
        };
        let hint = |mut errors: Vec<String>| {
            errors.extend(notes.iter().cloned());
            errors
        };
        let loaded = config::parse(&text, self.format).map_err(|e| hint(lines(e)))?;
        let missing = unsupported(&loaded.config);
        if missing.is_empty() {
            Ok(loaded)
        } else {
            Err(lines(missing))
        }
    }
}

pub(super) fn lines(errors: Vec<ConfigError>) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

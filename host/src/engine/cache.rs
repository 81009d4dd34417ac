//! The on-disk cache of precompiled modules.
//!
//! Compiling a policy takes tens of milliseconds (31-41 ms for a 44 KB module); loading a
//! precompiled artifact takes a third of a millisecond, which matters for hot reload. An
//! artifact is named by the module's SHA-256 and the engine's compatibility hash, so a
//! changed module or an engine with other settings never picks up a stale artifact.
//!
//! Loading an artifact skips validation (it is native code), so only artifacts this gateway
//! wrote may be loaded: the cache directory must belong to the gateway's user and be
//! writable by nobody else, and artifacts are written to a temporary name and renamed.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wasmtime::component::Component;

pub(crate) struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// Opens (creating with mode 0700) the cache directory, refusing one that others could
    /// write to.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create module cache `{}`", dir.display()))?;
        let meta = fs::metadata(dir)
            .with_context(|| format!("cannot read module cache `{}`", dir.display()))?;
        if meta.permissions().mode() & 0o022 != 0 {
            bail!(
                "module cache `{}` is writable by group or others (mode {:o})\n\
                 help: `chmod 700 {}`; precompiled code from it runs unchecked",
                dir.display(),
                meta.permissions().mode() & 0o777,
                dir.display()
            );
        }
        let uid = fs::metadata("/proc/self").map(|m| m.uid()).ok();
        if let Some(uid) = uid
            && meta.uid() != uid
        {
            bail!(
                "module cache `{}` belongs to uid {}, not to the gateway's uid {uid}",
                dir.display(),
                meta.uid()
            );
        }
        Ok(ArtifactCache {
            dir: dir.to_owned(),
        })
    }

    /// The compiled component for `bytes`, from the cache or compiled and stored.
    pub(crate) fn load_or_compile(
        &self,
        engine: &wasmtime::Engine,
        sha256: &str,
        bytes: &[u8],
    ) -> anyhow::Result<Component> {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let path = self
            .dir
            .join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "recompiling unreadable cached module");
                }
            }
        }
        let artifact = engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = fs::File::create(&temporary)
            .with_context(|| format!("cannot write `{}`", temporary.display()))?;
        file.write_all(&artifact)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        deserialize(engine, &path)
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &wasmtime::Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: `Component::deserialize` trusts the file to be an artifact produced by
    // `Engine::precompile_component` for a compatible engine. Files in this cache are only
    // written by `load_or_compile` above, under a name that includes the engine's
    // compatibility hash, in a directory `ArtifactCache::open` checked belongs to this user
    // and is not writable by anyone else. wasmtime additionally checks the artifact's header
    // and engine settings and refuses a mismatch.
    //
    // The artifact is read into memory rather than mapped (`deserialize_file`): a mapped
    // file that is truncated while in use (an operator clearing the cache) would crash the
    // gateway with SIGBUS.
    let bytes = fs::read(path)?;
    let component = unsafe { Component::deserialize(engine, &bytes) }?;
    Ok(component)
}

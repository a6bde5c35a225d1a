//! Email: templates (built-in, with per-tenant overrides by kind and locale,
//! rendered by minijinja with HTML escaping) and the transports (SMTP from
//! `LEADLINE_SMTP_URL`, else `.eml` files under `<data_dir>/mail/`).

use std::path::{Path, PathBuf};

use leadline_core::delivery::EmailPayload;
use leadline_core::tenant::{Settings, Template};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::config::Config;

/// Built-in templates, English.
fn builtin(kind: &str) -> Option<Template> {
    let t = |subject: &str, text: &str, html: &str| Template {
        subject: subject.into(),
        text: text.into(),
        html: html.into(),
    };
    Some(match kind {
        "lead_acknowledgement" => t(
            "We received your charter inquiry - {{ company_name }}",
            "Dear {{ lead.name }},\n\nThank you for your inquiry{% if lead.charter_from %} for {{ lead.charter_from }} to {{ lead.charter_to }}{% endif %}. \
             Our team will come back to you shortly.\n\n{{ company_name }}\n",
            "<p>Dear {{ lead.name }},</p><p>Thank you for your inquiry{% if lead.charter_from %} for {{ lead.charter_from }} to \
             {{ lead.charter_to }}{% endif %}. Our team will come back to you shortly.</p><p>{{ company_name }}</p>",
        ),
        "lead_notification" => t(
            "New lead: {{ lead.name }}{% if duplicate %} (repeat inquiry){% endif %}",
            "A new inquiry arrived.\n\nName: {{ lead.name }}\nEmail: {{ lead.email }}\nPhone: {{ lead.phone or '-' }}\n\
             Dates: {{ lead.charter_from or '-' }} to {{ lead.charter_to or '-' }}\nGuests: {{ lead.guests or '-' }}\n\
             Destination: {{ lead.destination or '-' }}\nMessage: {{ lead.message or '-' }}\n\nLead id: {{ lead.id }}\n",
            "<p>A new inquiry arrived.</p><ul><li>Name: {{ lead.name }}</li><li>Email: {{ lead.email }}</li>\
             <li>Phone: {{ lead.phone or '-' }}</li><li>Dates: {{ lead.charter_from or '-' }} to {{ lead.charter_to or '-' }}</li>\
             <li>Guests: {{ lead.guests or '-' }}</li><li>Destination: {{ lead.destination or '-' }}</li>\
             <li>Message: {{ lead.message or '-' }}</li></ul><p>Lead id: {{ lead.id }}</p>",
        ),
        "quote" => t(
            "Your charter quote - {{ company_name }}",
            "Dear {{ lead.name }},\n\nYour quote is ready: {{ quote_url }}\n\n{{ company_name }}\n",
            "<p>Dear {{ lead.name }},</p><p>Your quote is ready: <a href=\"{{ quote_url }}\">view it here</a>.</p><p>{{ company_name }}</p>",
        ),
        "quote_accepted" => t(
            "Quote accepted by {{ lead.name }}",
            "{{ lead.name }} accepted quote {{ quote_id }}.\n",
            "<p>{{ lead.name }} accepted quote {{ quote_id }}.</p>",
        ),
        _ => return None,
    })
}

/// Picks the template: the tenant's for the exact locale, then for its language,
/// then the built-in one.
fn choose(settings: &Settings, kind: &str, locale: &str) -> Option<Template> {
    let lang = locale.split('-').next().unwrap_or(locale);
    settings
        .templates
        .get(kind)
        .and_then(|m| m.get(locale).or_else(|| m.get(lang)))
        .cloned()
        .or_else(|| builtin(kind))
}

/// The most steps (instructions) one template part may take to render: loops
/// over loops end here, in a few milliseconds, whatever the template.
pub const TEMPLATE_FUEL: u64 = 50_000;

/// The most one rendered part (subject, text or HTML) may hold.
pub const TEMPLATE_MAX_OUTPUT: usize = 256 * 1024;

fn env_for(t: &Template) -> Result<minijinja::Environment<'static>, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    env.add_template_owned("subject.txt", t.subject.clone())?;
    env.add_template_owned("body.txt", t.text.clone())?;
    env.add_template_owned("body.html", t.html.clone())?;
    Ok(env)
}

/// Compiled templates, so that each email does not parse its three templates
/// again: keyed by the templates' text (a tenant's edit is a new key), bounded.
fn compiled(t: &Template) -> Result<std::sync::Arc<minijinja::Environment<'static>>, minijinja::Error> {
    use std::collections::HashMap;
    use std::hash::{Hash, Hasher};
    use std::sync::{Arc, LazyLock, Mutex};
    type Cache = Mutex<HashMap<u64, (Template, Arc<minijinja::Environment<'static>>)>>;
    static CACHE: LazyLock<Cache> = LazyLock::new(|| Mutex::new(HashMap::new()));
    const MAX: usize = 1024;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&t.subject, &t.text, &t.html).hash(&mut h);
    let key = h.finish();
    if let Some((same, env)) = CACHE.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
        && same == t
    {
        return Ok(env.clone());
    }
    let env = Arc::new(env_for(t)?);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= MAX {
        cache.clear();
    }
    cache.insert(key, (t.clone(), env.clone()));
    Ok(env)
}

/// Text for an email header: one line whatever the template or the values put in
/// it, no control or bidirectional characters, and no `=?` that a mail client
/// could decode as an RFC 2047 encoded-word (the header encoder adds its own).
pub fn header_text(s: &str) -> String {
    let one_line = s
        .split(['\r', '\n', '\u{2028}', '\u{2029}'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    one_line
        .chars()
        .filter(|c| !c.is_control() && !leadline_core::text::is_spoofing(*c))
        .collect::<String>()
        .replace("=?", "=\u{200B}?")
}

/// A writer that refuses to grow past [`TEMPLATE_MAX_OUTPUT`].
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > TEMPLATE_MAX_OUTPUT {
            return Err(std::io::Error::other("output limit"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why a template could not be rendered. The text names the limit or the
/// template error's kind, never a value (values are personal data).
#[derive(Debug)]
pub struct RenderError(String);

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn render_part<C: Serialize>(
    env: &minijinja::Environment<'static>,
    name: &str,
    ctx: &C,
) -> Result<String, RenderError> {
    let tpl = env
        .get_template(name)
        .map_err(|e| RenderError(format!("{name}: {:?}", e.kind())))?;
    let mut out = Bounded(Vec::new());
    match tpl.render_captured_to(ctx, &mut out) {
        Ok(_) => String::from_utf8(out.0).map_err(|_| RenderError(format!("{name}: not UTF-8"))),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(RenderError(format!(
            "{name}: takes more than {TEMPLATE_FUEL} steps to render"
        ))),
        Err(e) if e.kind() == minijinja::ErrorKind::WriteFailure => Err(RenderError(format!(
            "{name}: renders more than {} KiB",
            TEMPLATE_MAX_OUTPUT / 1024
        ))),
        // The kind and line only: a message may quote a value.
        Err(e) => Err(RenderError(format!(
            "{name}: {:?} at line {}",
            e.kind(),
            e.line().unwrap_or(0)
        ))),
    }
}

fn render_with<C: Serialize>(t: &Template, ctx: &C) -> Result<(String, String, String), RenderError> {
    let env = compiled(t).map_err(|e| RenderError(format!("does not compile: {:?}", e.kind())))?;
    let subject = header_text(&render_part(&env, "subject.txt", ctx)?);
    Ok((
        subject,
        render_part(&env, "body.txt", ctx)?,
        render_part(&env, "body.html", ctx)?,
    ))
}

/// Renders an email of `kind` for `locale`. A tenant template that fails to render
/// falls back to the built-in one (and is logged), so a typo never loses a message.
pub fn render<C: Serialize>(
    settings: &Settings,
    kind: &str,
    locale: &str,
    ctx: &C,
) -> Option<(String, String, String)> {
    let chosen = choose(settings, kind, locale)?;
    match render_with(&chosen, ctx) {
        Ok(r) => Some(r),
        Err(e) => {
            // `e` names the limit or the error kind, never a value of the lead.
            tracing::warn!(kind, error = %e, "a tenant template failed to render; using the built-in one");
            render_with(&builtin(kind)?, ctx).ok()
        }
    }
}

/// Checks a template for `PATCH /v1/settings`: it compiles, and it renders the
/// largest lead Leadline takes within [`TEMPLATE_FUEL`] steps and
/// [`TEMPLATE_MAX_OUTPUT`] bytes per part.
pub fn check_template(t: &Template) -> Result<(), String> {
    env_for(t).map_err(|e| format!("does not compile: {e}"))?;
    let long = "x".repeat(5000);
    let name = "N".repeat(200);
    let sample = serde_json::json!({
        "company_name": "C".repeat(200),
        "duplicate": true,
        "quote_url": "https://leads.example.com/q/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "quote_id": "quote_01j00000000000000000000000",
        "yacht": name, "total": "100,000,000,000.00 EUR",
        "lead": {
            "id": "lead_01j00000000000000000000000", "name": name, "email": format!("{}@example.com", "e".repeat(60)),
            "phone": "+30 694 123 4567", "charter_from": "2030-07-01", "charter_to": "2030-07-08",
            "guests": 60, "destination": "D".repeat(200), "message": long, "yacht_type": "catamaran",
            "charter_type": "crewed", "budget": "1,000,000.00 EUR", "tags": vec!["t"; 20],
        },
    });
    render_with(t, &sample).map(|_| ()).map_err(|e| e.to_string())
}

/// How a send went.
#[derive(Debug)]
pub struct SendError {
    /// Not worth retrying (a 5xx SMTP answer such as an unknown mailbox).
    pub permanent: bool,
    /// SMTP reply code, if any.
    pub code: Option<u16>,
    /// What happened, shortened.
    pub detail: String,
}

/// Where emails go.
#[derive(Clone)]
pub enum Mailer {
    /// A real SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in a folder (the embedded default: nothing is lost).
    Files(std::sync::Arc<FileMail>),
}

/// The file transport's folder, its writers and its flushes (see [`Mailer::flush`]).
pub struct FileMail {
    dir: PathBuf,
    /// Flushes asked for so far (a ticket each).
    asked: std::sync::atomic::AtomicU64,
    /// The last ticket known durable: every flush asked for up to it is done.
    durable: tokio::sync::Mutex<u64>,
    /// Syncs made.
    syncs: std::sync::atomic::AtomicU64,
    /// Folders with files renamed into them since the last flush.
    dirty: std::sync::Mutex<std::collections::BTreeSet<PathBuf>>,
    /// Files waiting to be written, and how many blocking threads write them.
    queue: std::sync::Mutex<Queue>,
}

/// Files waiting for a writer; see [`FileMail::write`].
#[derive(Default)]
struct Queue {
    files: Vec<Pending>,
    writers: usize,
}

/// A message file to write, and who waits for it.
struct Pending {
    dir: PathBuf,
    name: String,
    bytes: Vec<u8>,
    done: tokio::sync::oneshot::Sender<std::io::Result<String>>,
}

/// Blocking threads writing email files at once.
const FILE_WRITERS: usize = 4;
/// Files one writer takes from the queue at a time.
const FILES_PER_BATCH: usize = 64;

impl FileMail {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            asked: std::sync::atomic::AtomicU64::new(0),
            durable: tokio::sync::Mutex::new(0),
            syncs: std::sync::atomic::AtomicU64::new(0),
            dirty: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            queue: std::sync::Mutex::new(Queue::default()),
        }
    }

    /// Writes a message file (see [`write_files`]); its name is durable once a
    /// [`Mailer::flush`] asked for after this returns has returned.
    ///
    /// Files are written in batches by at most [`FILE_WRITERS`] blocking threads:
    /// a caller queues its file and starts a writer when fewer are running; a
    /// writer takes what is queued, writes it, and goes on until the queue is
    /// empty. A thread per file (as before) cost a thread handoff and a sync of
    /// the file's inode and folder block per file; a batch shares them.
    async fn write(self: &std::sync::Arc<Self>, dir: PathBuf, name: String, bytes: Vec<u8>) -> std::io::Result<String> {
        let (done, written) = tokio::sync::oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            q.files.push(Pending { dir, name, bytes, done });
            let start = q.writers < FILE_WRITERS;
            if start {
                q.writers += 1;
            }
            start
        };
        if start {
            let me = self.clone();
            // Not awaited: the writer answers every file it takes through its channel.
            drop(tokio::task::spawn_blocking(move || me.writer()));
        }
        written
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the file writer stopped")))
    }

    /// A writer thread: batches from the queue until it is empty.
    fn writer(&self) {
        // Should a write panic, the thread still gives its place back, so the files
        // queued behind it get a writer (the panicking batch's callers hear an error).
        struct Unwinding<'a>(&'a FileMail);
        impl Drop for Unwinding<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut q = self.0.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    q.writers -= 1;
                }
            }
        }
        let _unwinding = Unwinding(self);
        loop {
            let batch: Vec<Pending> = {
                let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if q.files.is_empty() {
                    q.writers -= 1;
                    return;
                }
                let n = q.files.len().min(FILES_PER_BATCH);
                q.files.drain(..n).collect()
            };
            let results = write_files(&batch);
            let folders = batch
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(p, _)| p.dir.clone());
            // Noted before anyone hears of their file, so a flush asked for after
            // covers them.
            self.dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(folders);
            for (p, r) in batch.into_iter().zip(results) {
                let _ = p.done.send(r);
            }
        }
    }
}

impl Mailer {
    /// From the configuration.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        match &config.smtp_url {
            Some(url) => {
                let t = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|e| format!("LEADLINE_SMTP_URL: {e}"))?
                    .timeout(Some(config.smtp_timeout))
                    .build();
                Ok(Self::Smtp(t))
            }
            None => Ok(Self::Files(std::sync::Arc::new(FileMail::new(
                config.data_dir.join("mail"),
            )))),
        }
    }

    /// Sends one message; `msg_id` names it (Message-ID, file name). A file of a
    /// lead's message goes to the lead's own folder, so erasure can remove it.
    pub async fn send(
        &self,
        from: &Mailbox,
        msg_id: &str,
        lead: Option<&str>,
        p: &EmailPayload,
    ) -> Result<String, SendError> {
        let fail = |detail: String| SendError {
            permanent: true,
            code: None,
            detail,
        };
        let mut from = from.clone();
        if let Some(name) = &p.from_name {
            from.name = Some(header_text(name));
        }
        let to: Mailbox = p.to.parse().map_err(|e| fail(format!("bad recipient: {e}")))?;
        let mut b = Message::builder()
            .from(from)
            .to(to)
            .subject(p.subject.clone())
            .message_id(Some(format!("<{msg_id}@leadline>")));
        if let Some(r) = &p.reply_to
            && let Ok(r) = r.parse::<Mailbox>()
        {
            b = b.reply_to(r);
        }
        let body = MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(p.text.clone()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(p.html.clone()),
            );
        let message = b
            .multipart(body)
            .map_err(|e| fail(format!("cannot build the message: {e}")))?;
        match self {
            Self::Smtp(t) => match t.send(message).await {
                Ok(resp) => Ok(format!("{} {}", resp.code(), resp.first_line().unwrap_or(""))),
                Err(e) => Err(SendError {
                    permanent: e.is_permanent(),
                    code: e.status().map(|c| c.to_string().parse().unwrap_or(0)),
                    detail: short(&e.to_string()),
                }),
            },
            Self::Files(files) => {
                let (dir, name) = file_place(&files.dir, msg_id, lead);
                files
                    .write(dir, name, message.formatted())
                    .await
                    .map_err(|e| SendError {
                        permanent: false,
                        code: None,
                        detail: short(&e.to_string()),
                    })
            }
        }
    }

    /// Makes the messages written as files so far durable: called before their
    /// deliveries are recorded, so a message recorded as sent is on disk. Each
    /// file's data was synced when it was written; this syncs the folders their
    /// names were renamed into (and the mail folder, which holds the day
    /// folders), once for every file written before it began, so concurrent
    /// callers share one: a caller waits for the sync under way, and returns
    /// without another when that one began after it asked. Only Leadline's own
    /// files are synced (a `syncfs` would also write out every other program's
    /// data on the file system, unbounded). Nothing to do for SMTP (the server's
    /// answer is the acknowledgement).
    pub async fn flush(&self) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let Self::Files(files) = self else { return Ok(()) };
        let ticket = files.asked.fetch_add(1, Ordering::AcqRel) + 1;
        let mut durable = files.durable.lock().await;
        if *durable >= ticket {
            return Ok(());
        }
        // Every ticket issued by now was issued after its file was written and
        // its folder noted, so syncing the folders noted by now covers them all.
        let covers = files.asked.load(Ordering::Acquire);
        let folders = std::mem::take(&mut *files.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if folders.is_empty() {
            // Nothing renamed since the last sync that succeeded (a batch of webhooks):
            // every file written before this ticket is durable already. A new day
            // folder comes with a file in it, so the mail folder waits for that.
            *durable = covers;
            return Ok(());
        }
        let mut dirs: Vec<PathBuf> = folders.iter().cloned().collect();
        dirs.push(files.dir.clone());
        let synced = tokio::task::spawn_blocking(move || sync_folders(&dirs))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        if let Err(e) = synced {
            // Synced again by the next flush.
            files
                .dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(folders);
            return Err(e);
        }
        *durable = covers;
        files.syncs.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("leadline_mail_file_syncs_total").increment(1);
        Ok(())
    }
}

/// Where a message's file goes: `<mail>/<day>/<lead_id>.<msg_id>.eml`, the day
/// (UTC) being the lead's creation day, which its id carries; so a lead's files
/// are found without a folder per lead (creating one per lead was a fifth of the
/// intake's CPU), and a folder holds one day. A message without a lead:
/// `<mail>/<msg_id>.eml`.
fn file_place(mail: &Path, msg_id: &str, lead: Option<&str>) -> (PathBuf, String) {
    match lead.and_then(|l| lead_day(l).map(|d| (l, d))) {
        Some((lead, day)) => (mail.join(day), format!("{lead}.{msg_id}.eml")),
        None => (mail.to_path_buf(), format!("{msg_id}.eml")),
    }
}

/// The UTC day a lead was created, from its id (`2026-11-28`).
fn lead_day(lead_id: &str) -> Option<String> {
    let ms = leadline_core::id::created_ms(lead_id)?;
    let at = chrono::DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)?;
    Some(at.format("%Y-%m-%d").to_string())
}

/// Writes message files, each whole or not at all: a temporary file, its data
/// synced, renamed into place; a result per file. The names are durable once
/// [`Mailer::flush`] returns. Every file is written before the first is synced:
/// the syncs that follow find the inode and folder blocks the files share
/// written already by the first.
fn write_files(batch: &[Pending]) -> Vec<std::io::Result<String>> {
    use std::io::Write;
    let create = |p: &Pending| -> std::io::Result<(std::fs::File, PathBuf)> {
        let tmp = p.dir.join(format!(".{}.tmp", p.name));
        let mut file = match std::fs::File::create(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&p.dir)?;
                std::fs::File::create(&tmp)?
            }
            r => r?,
        };
        file.write_all(&p.bytes)?;
        Ok((file, tmp))
    };
    let created: Vec<_> = batch.iter().map(create).collect();
    batch
        .iter()
        .zip(created)
        .map(|(p, c)| {
            let (file, tmp) = c?;
            file.sync_data()?;
            drop(file);
            let path = p.dir.join(&p.name);
            std::fs::rename(&tmp, &path)?;
            Ok(format!("written to {}", path.display()))
        })
        .collect()
}

/// Syncs folders (their entries: the renames made into them); a folder that
/// does not exist (no message was ever written) has nothing to sync.
fn sync_folders(dirs: &[PathBuf]) -> std::io::Result<()> {
    for dir in dirs {
        match std::fs::File::open(dir) {
            Ok(f) => f.sync_all()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes the `.eml` files of a lead, if any: `<lead_id>.*.eml` in the folder of
/// its day, and the folder `<data_dir>/mail/<lead_id>/` of the earlier layout.
pub async fn erase_lead_files(data_dir: &std::path::Path, lead_id: &str) {
    let mail = data_dir.join("mail");
    let lead_id = lead_id.to_owned();
    let done = tokio::task::spawn_blocking(move || erase_files(&mail, &lead_id)).await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "could not remove an erased lead's email files"),
        Err(e) => tracing::error!(error = %e, "could not remove an erased lead's email files"),
    }
}

fn erase_files(mail: &Path, lead_id: &str) -> std::io::Result<()> {
    let absent = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    };
    if leadline_core::id::is_id_shaped(lead_id) {
        absent(std::fs::remove_dir_all(mail.join(lead_id)))?;
    }
    let Some(day) = lead_day(lead_id) else { return Ok(()) };
    let dir = mail.join(day);
    let prefix = format!("{lead_id}.");
    let hidden = format!(".{lead_id}.");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) || name.starts_with(&hidden) {
            absent(std::fs::remove_file(entry.path()))?;
        }
    }
    Ok(())
}

/// At most 300 characters of an error or answer.
pub fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_share_syncs() {
        use std::sync::atomic::Ordering;
        let tmp = tempfile::tempdir().expect("tmp");
        use super::{FileMail, Mailer};
        let files = std::sync::Arc::new(FileMail::new(tmp.path().join("mail")));
        std::fs::create_dir_all(tmp.path().join("mail")).expect("mkdir");
        let mailer = Mailer::Files(files.clone());
        let written = || {
            files
                .dirty
                .lock()
                .expect("dirty")
                .insert(tmp.path().join("mail").join("2026-11-29"));
        };
        // Nothing written: nothing to sync.
        mailer.flush().await.expect("flush");
        assert_eq!(files.syncs.load(Ordering::Relaxed), 0);
        written();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let m = mailer.clone();
            set.spawn(async move { m.flush().await });
        }
        while let Some(r) = set.join_next().await {
            r.expect("join").expect("flush");
        }
        let shared = files.syncs.load(Ordering::Relaxed);
        assert!((1..50).contains(&shared), "{shared} syncs for 50 concurrent flushes");
        // A flush asked for after those returned makes a sync of its own when a
        // file was written since, and none otherwise.
        mailer.flush().await.expect("flush");
        assert_eq!(files.syncs.load(Ordering::Relaxed), shared);
        written();
        mailer.flush().await.expect("flush");
        assert_eq!(files.syncs.load(Ordering::Relaxed), shared + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_are_written_in_batches_each_whole_or_failing_alone() {
        use std::sync::atomic::Ordering;
        let tmp = tempfile::tempdir().expect("tmp");
        let mail = tmp.path().join("mail");
        let files = std::sync::Arc::new(super::FileMail::new(mail.clone()));
        // A "folder" that is a file: the messages meant for it fail, alone.
        std::fs::create_dir_all(&mail).expect("mkdir");
        std::fs::write(mail.join("blocked"), b"not a folder").expect("write");
        let mut set = tokio::task::JoinSet::new();
        for i in 0..300 {
            let f = files.clone();
            let dir = if i % 100 == 7 {
                mail.join("blocked")
            } else {
                mail.join(format!("day{}", i % 3))
            };
            set.spawn(async move {
                (
                    i,
                    f.write(dir, format!("m{i}.eml"), format!("message {i}").into_bytes())
                        .await,
                )
            });
        }
        let mut failed = Vec::new();
        while let Some(r) = set.join_next().await {
            let (i, r) = r.expect("join");
            match r {
                Ok(said) => assert!(said.contains(&format!("m{i}.eml")), "{said}"),
                Err(_) => failed.push(i),
            }
        }
        failed.sort_unstable();
        assert_eq!(failed, vec![7, 107, 207]);
        for i in (0..300).filter(|i| i % 100 != 7) {
            let path = mail.join(format!("day{}", i % 3)).join(format!("m{i}.eml"));
            assert_eq!(std::fs::read_to_string(&path).expect("written"), format!("message {i}"));
        }
        // No temporary file is left, every writer has stopped, the folders await a flush.
        for day in 0..3 {
            let names: Vec<_> = std::fs::read_dir(mail.join(format!("day{day}")))
                .expect("dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                names.iter().all(|n| n.ends_with(".eml") && !n.starts_with('.')),
                "{names:?}"
            );
        }
        let idle = {
            let q = files.queue.lock().expect("queue");
            (q.files.len(), q.writers)
        };
        assert_eq!(idle, (0, 0));
        assert_eq!(files.dirty.lock().expect("dirty").len(), 3);
        super::Mailer::Files(files.clone()).flush().await.expect("flush");
        assert_eq!(files.syncs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn header_text_is_one_plain_line() {
        assert_eq!(
            super::header_text("Your quote\r\nBcc: x@example.com"),
            "Your quote Bcc: x@example.com"
        );
        assert_eq!(super::header_text("a\u{202E}b\u{2028}c"), "ab c");
        let s = super::header_text("=?utf-8?q?Bank?=");
        assert!(!s.contains("=?"), "{s}");
    }
}

#[cfg(test)]
mod limits {
    use leadline_core::tenant::Template;

    fn t(text: &str) -> Template {
        Template {
            subject: "S".into(),
            text: text.into(),
            html: "<p>h</p>".into(),
        }
    }

    #[test]
    fn a_runaway_template_is_refused_and_its_error_names_no_value() {
        let nested = t("{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}");
        let e = super::check_template(&nested).expect_err("too many steps");
        assert!(e.contains("steps"), "{e}");
        let amplifier = t("{% for c in lead.message %}{{ lead.message }}{% endfor %}");
        let e = super::check_template(&amplifier).expect_err("too much output");
        assert!(e.contains("steps") || e.contains("KiB"), "{e}");
        // A render error says where and what kind, not the value it met.
        let bad = t("{{ lead.email + 1 }}");
        let ctx = serde_json::json!({"lead": {"email": "maria.secret@example.com"}});
        let e = super::render_with(&bad, &ctx).expect_err("cannot add").to_string();
        assert!(!e.contains("secret"), "{e}");
        // An ordinary template passes, quickly.
        let fine = t("Dear {{ lead.name }}, {% for t in lead.tags %}{{ t }} {% endfor %}{{ lead.message }}");
        super::check_template(&fine).expect("fine");
    }
}

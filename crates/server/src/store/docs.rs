//! Collaborative documents (`crate::collab`): a snapshot and the updates appended since, as
//! opaque Yjs bytes. The store never decodes them; merging updates into a snapshot is the
//! caller's (compaction takes a function that does it).
//!
//! Appends go through [`Store::write`], so on SQLite they share the group commit with every
//! other write, and an update is durable when the call returns: the document forwards it to
//! other editors only then.

use super::rows::fetch_row;
use super::tasks::update_in;
use super::{now_ms, Result, Store, StoreError};
use crate::domain::{Description, TaskChange};
use taskflow_protocol::Task;
use uuid::Uuid;

/// A document as stored: load it by applying the snapshot, then every update.
#[derive(Debug, Clone, Default)]
pub struct StoredDoc {
    /// A Yjs update (v1) holding everything through `through` minus what `updates` hold.
    pub snapshot: Vec<u8>,
    /// The updates not in the snapshot (or possibly in it too: applying one twice is a no-op).
    pub updates: Vec<Vec<u8>>,
    /// The highest sequence number the two together cover.
    pub through: i64,
    /// How many bytes the snapshot and updates take: what the document's size limit counts.
    pub bytes: usize,
}

impl Store {
    /// Loads a document; if it has never been stored, stores `seed()` as its first snapshot
    /// (on any node, only one seed is ever stored: the insert does nothing if the row exists,
    /// and every node loads what was stored, so no two nodes start from different seeds).
    pub async fn load_doc(
        &self,
        doc: &str,
        seed: impl FnOnce() -> Vec<u8> + Send + 'static,
    ) -> Result<StoredDoc> {
        if let Some(stored) = self.read_doc(doc).await? {
            return Ok(stored);
        }
        let id = doc.to_owned();
        let snapshot = seed();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO docs (id, last_seq, snapshot, snapshot_seq, updated_at) \
                     VALUES ($1, 0, $2, 0, $3) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(snapshot)
                .bind(now_ms())
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await?;
        self.read_doc(doc)
            .await?
            .ok_or_else(|| StoreError::DocNotFound(doc.to_owned()))
    }

    /// Reads without a transaction, safely: the updates are read before the snapshot. A
    /// compaction in between deletes only updates its new snapshot covers, so whatever it
    /// removed after the first read is in what the second read finds.
    async fn read_doc(&self, doc: &str) -> Result<Option<StoredDoc>> {
        let updates: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, data FROM doc_updates WHERE doc = $1 ORDER BY seq")
                .bind(doc)
                .fetch_all(&self.read)
                .await?;
        let row: Option<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT snapshot, snapshot_seq FROM docs WHERE id = $1")
                .bind(doc)
                .fetch_optional(&self.read)
                .await?;
        let Some((snapshot, snapshot_seq)) = row else {
            return Ok(None);
        };
        let through = updates
            .last()
            .map_or(snapshot_seq, |(seq, _)| *seq.max(&snapshot_seq));
        let bytes = snapshot.len() + updates.iter().map(|(_, u)| u.len()).sum::<usize>();
        Ok(Some(StoredDoc {
            snapshot,
            updates: updates
                .into_iter()
                .filter(|(seq, _)| *seq > snapshot_seq)
                .map(|(_, u)| u)
                .collect(),
            through,
            bytes,
        }))
    }

    /// The last sequence number of each of these documents (those that exist).
    pub async fn doc_last_seqs(&self, docs: &[String]) -> Result<Vec<(String, i64)>> {
        let mut found = Vec::with_capacity(docs.len());
        for chunk in docs.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT id, last_seq FROM docs WHERE id IN ({marks})");
            let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
            for doc in chunk {
                query = query.bind(doc);
            }
            found.extend(query.fetch_all(&self.read).await?);
        }
        Ok(found)
    }

    /// What was stored after `after`: the updates, and the snapshot too if a compaction folded
    /// some of them into it (read after the updates, like [`Store::load_doc`], so nothing falls
    /// between the two reads). Returns the highest sequence number covered.
    pub async fn doc_updates_after(&self, doc: &str, after: i64) -> Result<(Vec<Vec<u8>>, i64)> {
        let updates: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, data FROM doc_updates WHERE doc = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(doc)
        .bind(after)
        .fetch_all(&self.read)
        .await?;
        let row: Option<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT snapshot, snapshot_seq FROM docs WHERE id = $1")
                .bind(doc)
                .fetch_optional(&self.read)
                .await?;
        let Some((snapshot, snapshot_seq)) = row else {
            return Err(StoreError::DocNotFound(doc.to_owned()));
        };
        let mut through = updates.last().map_or(after, |(seq, _)| *seq);
        let mut out = Vec::with_capacity(updates.len() + 1);
        if snapshot_seq > after {
            out.push(snapshot);
            through = through.max(snapshot_seq);
        }
        out.extend(updates.into_iter().map(|(_, u)| u));
        Ok((out, through))
    }

    /// Appends one update and returns its sequence number; durable once this returns.
    pub async fn append_doc_update(&self, doc: &str, update: Vec<u8>) -> Result<i64> {
        let doc = doc.to_owned();
        self.write(move |tx| Box::pin(async move { append(tx, &doc, update).await }))
            .await
    }

    /// A REST change of a task that also edits its document: the task's row (with `If-Match`,
    /// logging `task.updated` as any update does) and the document's update commit together or
    /// not at all.
    pub async fn update_task_and_doc(
        &self,
        id: Uuid,
        change: TaskChange,
        if_match: Option<i64>,
        doc: String,
        update: Vec<u8>,
    ) -> Result<(Task, i64)> {
        let project = self.task_project(id).await?;
        self.write(move |tx| {
            Box::pin(async move {
                let task = update_in(tx, project, id, change, if_match).await?;
                let seq = append(tx, &doc, update).await?;
                Ok((task, seq))
            })
        })
        .await
    }

    /// Writes a document's text into its task's `description`, logging `task.updated`, unless
    /// the row already holds that text (then nothing is written and `None` is returned). The
    /// text is checked like any description; a NUL, which PostgreSQL cannot store, is written
    /// as U+FFFD.
    pub async fn mirror_description(&self, id: Uuid, text: String) -> Result<Option<Task>> {
        let text = if text.contains('\0') {
            text.replace('\0', "\u{FFFD}")
        } else {
            text
        };
        let project = self.task_project(id).await?;
        self.write(move |tx| {
            Box::pin(async move {
                let row = fetch_row(tx, id)
                    .await?
                    .ok_or(StoreError::TaskNotFound(id))?;
                let wanted = (!text.is_empty()).then_some(text);
                if row.description == wanted {
                    return Ok(None);
                }
                let description = match wanted {
                    Some(text) => Some(
                        Description::parse(&text)
                            .map_err(|e| StoreError::Corrupt(format!("document text: {e}")))?,
                    ),
                    None => None,
                };
                let change = TaskChange {
                    description: Some(description),
                    ..TaskChange::default()
                };
                update_in(tx, project, id, change, None).await.map(Some)
            })
        })
        .await
    }

    /// Replaces the snapshot with `merge(snapshot, updates)` and deletes the updates it now
    /// holds, in one transaction that holds the document's row lock (so no append interleaves).
    /// Returns the new stored size, or `None` if the document is gone.
    pub async fn compact_doc(
        &self,
        doc: &str,
        merge: impl FnOnce(Vec<u8>, Vec<Vec<u8>>) -> Option<Vec<u8>> + Send + 'static,
    ) -> Result<Option<usize>> {
        let doc = doc.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
                    "UPDATE docs SET updated_at = $2 WHERE id = $1 RETURNING last_seq, snapshot",
                )
                .bind(&doc)
                .bind(now_ms())
                .fetch_optional(&mut **tx)
                .await?;
                let Some((last_seq, snapshot)) = row else {
                    return Ok(None);
                };
                let updates: Vec<Vec<u8>> = sqlx::query_scalar(
                    "SELECT data FROM doc_updates WHERE doc = $1 AND seq <= $2 ORDER BY seq",
                )
                .bind(&doc)
                .bind(last_seq)
                .fetch_all(&mut **tx)
                .await?;
                if updates.is_empty() {
                    return Ok(Some(snapshot.len()));
                }
                let Some(merged) = merge(snapshot, updates) else {
                    return Err(StoreError::Corrupt(format!(
                        "document {doc} does not merge"
                    )));
                };
                let size = merged.len();
                sqlx::query("UPDATE docs SET snapshot = $2, snapshot_seq = $3 WHERE id = $1")
                    .bind(&doc)
                    .bind(merged)
                    .bind(last_seq)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM doc_updates WHERE doc = $1 AND seq <= $2")
                    .bind(&doc)
                    .bind(last_seq)
                    .execute(&mut **tx)
                    .await?;
                Ok(Some(size))
            })
        })
        .await
    }
}

/// Appends inside a transaction: the row's lock first, then the update under the next number.
async fn append(tx: &mut super::tx::WriteTx<'_>, doc: &str, update: Vec<u8>) -> Result<i64> {
    let seq: Option<i64> = sqlx::query_scalar(
        "UPDATE docs SET last_seq = last_seq + 1, updated_at = $2 WHERE id = $1 RETURNING last_seq",
    )
    .bind(doc)
    .bind(now_ms())
    .fetch_optional(&mut **tx)
    .await?;
    let seq = seq.ok_or_else(|| StoreError::DocNotFound(doc.to_owned()))?;
    sqlx::query("INSERT INTO doc_updates (doc, seq, data) VALUES ($1, $2, $3)")
        .bind(doc)
        .bind(seq)
        .bind(update)
        .execute(&mut **tx)
        .await?;
    Ok(seq)
}

/// Deletes a document and its updates, inside the transaction that deletes its task.
pub(crate) async fn delete_in(tx: &mut super::tx::WriteTx<'_>, doc: &str) -> Result<()> {
    sqlx::query("DELETE FROM doc_updates WHERE doc = $1")
        .bind(doc)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM docs WHERE id = $1")
        .bind(doc)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

//! The pictures of a user's conversation as the model gets them: looked up in the store
//! (a file that expired or was deleted becomes a sentence), measured and downscaled inside
//! a sandbox (the host never decodes an untrusted picture), then sent as base64 data URLs
//! of bytes the store or the sandbox produced.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;

use super::App;
use super::picture_cache::{PictureKey, Preparation};
use crate::filetypes::{PICTURE_MIME_TYPES, is_picture, picture_mime};
use crate::llm::history::{ImageKind, ImageRef};
use crate::llm::pictures::{PictureSource, Pictures, Shown};
use crate::llm::vision::{Detail, image_tokens};
use crate::run_result::GeneratedFile;
use crate::sandbox::{ExecutionResult, Status};
use crate::store::{FileRecord, StoreError};

/// Longest side of an attached picture the model gets (larger ones are downscaled).
pub const ATTACHED_SIDE: u32 = 2048;
/// Longest side of a figure a run drew, as the model gets it.
pub const FIGURE_SIDE: u32 = 1024;

const PREPARE_CODE: &str = r#"import json, codebox_files
for fid, side, limit in JOBS_VALUE:
    try:
        r = codebox_files.prepare_image(fid, side, limit)
    except Exception as e:
        r = {"file_id": fid, "ok": False, "note": "not a readable picture (%s)" % type(e).__name__}
    print(json.dumps(r), flush=True)
"#;

/// One picture to make ready: its record and the longest side it may have.
struct Job {
    record: FileRecord,
    side: u32,
}

#[derive(Deserialize)]
struct ReportLine {
    file_id: String,
    ok: bool,
    #[serde(default)]
    width: u32,
    #[serde(default)]
    height: u32,
    #[serde(default)]
    mime: String,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    note: String,
}

/// Pure: what the sandbox's report says of each picture asked about. The report comes from
/// a sandbox that decoded untrusted files: only ids asked about count, only the four
/// picture types, sizes a model could take, and data that is plain base64 within the cap.
pub fn parse_report(
    stdout: &str,
    asked: &[(String, u32)],
    max_bytes: u64,
) -> HashMap<String, Preparation> {
    let max_chars = (max_bytes as usize).div_ceil(3) * 4;
    let mut out = HashMap::new();
    for line in stdout.lines() {
        let Ok(line) = serde_json::from_str::<ReportLine>(line) else {
            continue;
        };
        let Some((_, side)) = asked.iter().find(|(id, _)| id == &line.file_id) else {
            continue;
        };
        let preparation = if !line.ok {
            let why: String = line
                .note
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            Preparation::Refused {
                why: if why.is_empty() {
                    "not a readable picture".into()
                } else {
                    why
                },
            }
        // The only picture types sent; whatever else a report claims is refused.
        } else if !PICTURE_MIME_TYPES.contains(&line.mime.as_str())
            || line.width == 0
            || line.height == 0
            || line.width > 65_535
            || line.height > 65_535
        {
            Preparation::Refused {
                why: "the sandbox's report on it was not usable".into(),
            }
        } else {
            match line.data {
                Some(data)
                    if data.len() > max_chars
                        || line.width.max(line.height) > *side
                        || !data
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) =>
                {
                    Preparation::Refused {
                        why: "its downscaled copy was not usable".into(),
                    }
                }
                data => Preparation::Ready {
                    width: line.width,
                    height: line.height,
                    mime: line.mime,
                    data: data.map(Arc::from),
                },
            }
        };
        out.insert(line.file_id, preparation);
    }
    out
}

/// Pure: what the sandbox's measure of a figure a run wrote says for the model, when that
/// is all it needs: the figure goes as it is stored (the type the store detected agrees
/// with the measure, its sides and its bytes are within what the model takes). None sends
/// it through the picture run, which may downscale it.
pub fn measured_figure(file: &GeneratedFile, max_bytes: u64) -> Option<Preparation> {
    let picture = file.picture.as_ref()?;
    let fits = picture_mime(&file.file_type) == Some(picture.mime.as_str())
        && picture.width.min(picture.height) >= 1
        && picture.width.max(picture.height) <= FIGURE_SIDE
        && file.size <= max_bytes;
    fits.then(|| Preparation::Ready {
        width: picture.width,
        height: picture.height,
        mime: picture.mime.clone(),
        data: None,
    })
}

/// The most bytes of a picture sent to the model as it is.
pub fn max_picture_bytes(settings: &crate::config::Settings) -> u64 {
    (settings.chat.vision_max_image_mb * 1024.0 * 1024.0) as u64
}

/// The run's code for `jobs` (file ids are the store's own: 16 alphanumerics).
fn prepare_code(jobs: &[(String, u32)], max_bytes: u64) -> String {
    let list: Vec<serde_json::Value> = jobs
        .iter()
        .map(|(id, side)| serde_json::json!([id, side, max_bytes]))
        .collect();
    PREPARE_CODE.replace("JOBS_VALUE", &serde_json::Value::Array(list).to_string())
}

impl App {
    /// Keeps what a run's sandbox measured of the figures it wrote, so showing them to the
    /// model needs no picture run of their own.
    pub(super) fn keep_measured_figures(&self, files: &[GeneratedFile]) {
        let max_bytes = max_picture_bytes(&self.settings);
        for file in files {
            if let Some(ready) = measured_figure(file, max_bytes) {
                self.pictures
                    .put((file.file_id.clone(), FIGURE_SIDE), ready);
            }
        }
    }
}

/// The pictures of one user's conversation, for one turn: an image part made once (the
/// stored bytes read and encoded) serves every request of the turn.
pub struct UserPictures<'a> {
    app: &'a App,
    user_id: &'a str,
    parts: std::sync::Mutex<HashMap<ImageRef, Shown>>,
}

fn note_unreadable(image: &ImageRef) -> Shown {
    Shown::Note(format!(
        "[image {} could not be read just now]",
        image.filename
    ))
}

fn note_gone(image: &ImageRef) -> Shown {
    Shown::Note(format!("[image {} is no longer available]", image.filename))
}

impl<'a> UserPictures<'a> {
    pub fn new(app: &'a App, user_id: &'a str) -> UserPictures<'a> {
        UserPictures {
            app,
            user_id,
            parts: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn max_bytes(&self) -> u64 {
        max_picture_bytes(&self.app.settings)
    }

    /// Runs the sandbox over the pictures not made ready yet, and keeps what it says.
    async fn prepare(&self, jobs: &[Job]) -> HashMap<String, Arc<Preparation>> {
        let max_bytes = self.max_bytes();
        let asked: Vec<(String, u32)> = jobs
            .iter()
            .map(|j| (j.record.file_id.clone(), j.side))
            .collect();
        let records: Vec<FileRecord> = jobs.iter().map(|j| j.record.clone()).collect();
        let output_chars = jobs.len() * ((max_bytes as usize).div_ceil(3) * 4 + 4096);
        let result: Result<ExecutionResult, _> = self
            .app
            .run_over_files(
                self.user_id,
                &records,
                super::runs::OwnCode {
                    code: prepare_code(&asked, max_bytes),
                    output_chars,
                },
            )
            .await;
        let mut out = HashMap::new();
        match result {
            Ok(result) => {
                let mut report = parse_report(&result.stdout, &asked, max_bytes);
                // One picture alone that the sandbox could not get through (its memory, its
                // time) is that picture's fault: refused, and remembered.
                if report.is_empty() && asked.len() == 1 && result.status != Status::Ok {
                    report.insert(
                        asked[0].0.clone(),
                        Preparation::Refused {
                            why: format!(
                                "it could not be decoded within the sandbox's limits ({})",
                                result.status.as_str()
                            ),
                        },
                    );
                }
                for (id, side) in &asked {
                    if let Some(preparation) = report.remove(id) {
                        let kept = self.app.pictures.put((id.clone(), *side), preparation);
                        out.insert(id.clone(), kept);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot make pictures ready for the model"),
        }
        out
    }

    /// The part (or sentence) for a picture the sandbox made ready.
    async fn shown(&self, image: &ImageRef, record: &FileRecord, ready: &Preparation) -> Shown {
        match ready {
            Preparation::Refused { why } => Shown::Note(format!(
                "[{} (file id {}) is not shown as a picture: {why}]",
                image.filename, image.file_id
            )),
            Preparation::Ready {
                width,
                height,
                mime,
                data,
            } => {
                let tokens = image_tokens(*width, *height, Detail::High);
                let data = match data {
                    Some(data) => data.to_string(),
                    None => match self.stored_base64(record).await {
                        Ok(data) => data,
                        Err(reason) => {
                            tracing::warn!(file_id = %record.file_id, reason, "cannot read a stored picture");
                            return note_unreadable(image);
                        }
                    },
                };
                Shown::Part {
                    data_url: format!("data:{mime};base64,{data}"),
                    tokens,
                }
            }
        }
    }

    async fn stored_base64(&self, record: &FileRecord) -> Result<String, String> {
        let store = self.app.store().await.map_err(|e| e.to_string())?;
        let path = store.local_path(record).await.map_err(|e| e.to_string())?;
        let bytes = tokio::fs::read(&path).await.map_err(|e| e.to_string())?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

impl PictureSource for UserPictures<'_> {
    async fn resolve(&self, images: &[ImageRef], sees: bool) -> Pictures {
        let mut pictures = Pictures::new();
        // Parts made earlier in the turn; a picture not shown is looked up again (cheap),
        // so a store that was briefly unavailable is asked once more.
        let mut wanted = Vec::with_capacity(images.len());
        if let Ok(parts) = self.parts.lock() {
            for image in images {
                match parts.get(image) {
                    Some(part) if sees => {
                        pictures.insert(image.clone(), part.clone());
                    }
                    _ => wanted.push(image.clone()),
                }
            }
        } else {
            wanted = images.to_vec();
        }
        let images = &wanted[..];
        let store = match self.app.store().await {
            Ok(store) => store,
            Err(err) => {
                tracing::warn!(error = %err, "pictures: the store is unavailable");
                for image in images {
                    pictures.insert(image.clone(), note_unreadable(image));
                }
                return pictures;
            }
        };
        let mut found: Vec<(ImageRef, FileRecord, PictureKey)> = Vec::new();
        for image in images {
            let record = match store.get(self.user_id, &image.file_id).await {
                Ok(record) => record,
                Err(StoreError::NotFound { .. }) => {
                    pictures.insert(image.clone(), note_gone(image));
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "pictures: cannot look a file up");
                    pictures.insert(image.clone(), note_unreadable(image));
                    continue;
                }
            };
            if !sees {
                pictures.insert(
                    image.clone(),
                    Shown::Note(format!(
                        "[image {} (file id {}): this model cannot see pictures; code can read it with load_file('{}')]",
                        image.filename, image.file_id, image.file_id
                    )),
                );
                continue;
            }
            if !is_picture(&record.file_type) {
                pictures.insert(
                    image.clone(),
                    Shown::Note(format!(
                        "[{} (file id {}) is not shown as a picture: its content is {}, not PNG, JPEG, GIF or WebP]",
                        image.filename, image.file_id, record.file_type
                    )),
                );
                continue;
            }
            let side = match image.kind {
                ImageKind::Attached => ATTACHED_SIDE,
                ImageKind::Figure => FIGURE_SIDE,
            };
            let key = (record.file_id.clone(), side);
            found.push((image.clone(), record, key));
        }
        let jobs: Vec<Job> = found
            .iter()
            .filter(|(_, _, key)| self.app.pictures.get(key).is_none())
            .map(|(_, record, key)| Job {
                record: record.clone(),
                side: key.1,
            })
            .collect();
        let mut prepared = if jobs.is_empty() {
            HashMap::new()
        } else {
            self.prepare(&jobs).await
        };
        for (image, record, key) in found {
            let ready = self
                .app
                .pictures
                .get(&key)
                .or_else(|| prepared.remove(&record.file_id));
            let shown = match ready {
                Some(ready) => self.shown(&image, &record, &ready).await,
                None => Shown::Note(format!(
                    "[image {} could not be made ready for you just now]",
                    image.filename
                )),
            };
            if let (Shown::Part { .. }, Ok(mut parts)) = (&shown, self.parts.lock()) {
                parts.insert(image.clone(), shown.clone());
            }
            pictures.insert(image, shown);
        }
        pictures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Vec<(String, u32)> {
        vec![
            ("AAAAAAAAAAAAAAAA".into(), 1024),
            ("BBBBBBBBBBBBBBBB".into(), 1024),
        ]
    }

    #[test]
    fn the_report_is_believed_only_within_bounds() {
        let stdout = concat!(
            r#"{"file_id": "AAAAAAAAAAAAAAAA", "ok": true, "width": 800, "height": 600, "mime": "image/png", "downscaled": false}"#,
            "\n",
            r#"{"file_id": "BBBBBBBBBBBBBBBB", "ok": false, "note": "not a readable picture\n(OSError)"}"#,
            "\n",
            r#"{"file_id": "ZZZZZZZZZZZZZZZZ", "ok": true, "width": 8, "height": 8, "mime": "image/png"}"#,
            "\nnot json\n",
        );
        let report = parse_report(stdout, &asked(), 1000);
        assert_eq!(report.len(), 2, "only the ids asked about");
        assert_eq!(
            report["AAAAAAAAAAAAAAAA"],
            Preparation::Ready {
                width: 800,
                height: 600,
                mime: "image/png".into(),
                data: None
            }
        );
        assert_eq!(
            report["BBBBBBBBBBBBBBBB"],
            Preparation::Refused {
                why: "not a readable picture(OSError)".into()
            }
        );
        for bad in [
            r#"{"file_id": "AAAAAAAAAAAAAAAA", "ok": true, "width": 800, "height": 600, "mime": "text/html"}"#,
            r#"{"file_id": "AAAAAAAAAAAAAAAA", "ok": true, "width": 2000, "height": 600, "mime": "image/png", "data": "AAAA"}"#,
            r#"{"file_id": "AAAAAAAAAAAAAAAA", "ok": true, "width": 80, "height": 60, "mime": "image/png", "data": "AA\"};"}"#,
            r#"{"file_id": "AAAAAAAAAAAAAAAA", "ok": true, "width": 80, "height": 60, "mime": "image/png", "data": "QUFBQUFB"}"#,
        ] {
            let report = parse_report(bad, &asked(), 2);
            assert!(
                matches!(report["AAAAAAAAAAAAAAAA"], Preparation::Refused { .. }),
                "{bad}"
            );
        }
    }

    fn figure(file_type: &str, size: u64, picture: Option<(u32, u32, &str)>) -> GeneratedFile {
        GeneratedFile {
            file_id: "FIGUREFIGUREFIG1".into(),
            filename: "figure_1.png".into(),
            size,
            file_type: file_type.into(),
            path: "/nowhere".into(),
            picture: picture.map(|(width, height, mime)| crate::sandbox::PictureSize {
                width,
                height,
                mime: mime.into(),
            }),
        }
    }

    #[test]
    fn a_runs_own_measure_shows_a_figure_only_when_it_needs_no_downscaling() {
        assert_eq!(
            measured_figure(
                &figure("png", 50_000, Some((640, 480, "image/png"))),
                100_000
            ),
            Some(Preparation::Ready {
                width: 640,
                height: 480,
                mime: "image/png".into(),
                data: None
            })
        );
        for (file, why) in [
            (figure("png", 50_000, None), "not measured"),
            (
                figure("png", 50_000, Some((0, 480, "image/png"))),
                "no width",
            ),
            (
                figure("png", 50_000, Some((2000, 480, "image/png"))),
                "too wide",
            ),
            (
                figure("png", 200_000, Some((640, 480, "image/png"))),
                "too many bytes",
            ),
            (
                figure("jpg", 50_000, Some((640, 480, "image/png"))),
                "the store says JPEG",
            ),
            (
                figure("txt", 50_000, Some((640, 480, "image/png"))),
                "the store says text",
            ),
        ] {
            assert_eq!(measured_figure(&file, 100_000), None, "{why}");
        }
    }

    #[test]
    fn the_code_names_each_job() {
        let code = prepare_code(&asked(), 5);
        assert!(
            code.contains(r#"[["AAAAAAAAAAAAAAAA",1024,5],["BBBBBBBBBBBBBBBB",1024,5]]"#),
            "{code}"
        );
    }
}

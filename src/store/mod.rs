//! The per-user file store: bytes behind the `Blobs` trait (disk under
//! `DATA_DIR/user_files/<user_id>/`, or MongoDB GridFS), metadata behind the `Metadata` trait
//! (MongoDB, or the embedded SQLite default), limits, expiry, the sweeper and the reconcile
//! pass.

pub mod backend;
pub mod blobs;
pub mod clock;
pub mod db;
pub mod disk;
pub mod files;
pub mod gridfs;
pub mod ids;
pub mod metadata;
pub mod migrate;
pub mod mongo;
pub mod names;
pub mod record;
pub mod sqlite;
pub mod sweeper;

pub use backend::AnyMetadata;
pub use clock::{Clock, ManualClock};
pub use files::{AddOutcome, FileStore, ReconcileReport, StoreError, StoreLimits, SweepReport};
pub use metadata::{Metadata, MetadataError, StorageTrouble};
pub use record::{FileRecord, Origin};

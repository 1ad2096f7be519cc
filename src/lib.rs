//! The `husk` engine: container records, names, `run` (image config + flags → OCI spec), the
//! per-container monitor, logs, networking and volumes. Not built yet (issue 5); the runtime it
//! will drive is `husk-runtime`.

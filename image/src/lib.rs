//! husk's image half: references, the registry client, the content-addressed store, layer
//! unpacking and snapshots. Nothing here exists yet beyond the crate itself: see issue 4.

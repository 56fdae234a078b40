//! `eas-storage`: see the workspace README for its place in eas.

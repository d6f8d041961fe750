//! HTTP API: `/about/health`, `/about/stats`, `/about/version`, `/metrics`, graceful shutdown.
//! Built in the operations issue.

// Package chaos holds process-level tests: real cmd/worker and
// cmd/enqueue binaries against a real Postgres and a fake CP that injects
// faults, with workers killed by SIGKILL, stopped by SIGTERM, and cut off
// from their database. They prove the guarantees of the README's Guarantees section
// end to end, where a crash is a crash and not a cancelled context.
package chaos

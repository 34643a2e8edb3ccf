package store

// SuspectPageSQL is the statement SuspectRows runs, rendered for st, so
// tests can EXPLAIN it.
func SuspectPageSQL(st *Store, keyset bool) string { return st.q(suspectPage(keyset)) }

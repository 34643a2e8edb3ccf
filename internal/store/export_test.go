package store

// SuspectPageSQL is the statement SuspectRows runs, rendered for st, so
// tests can EXPLAIN it.
func SuspectPageSQL(st *Store, keyset bool) string { return st.q(suspectPage(keyset)) }

// InstanceOwnersSQL is the statement InstanceOwners runs, rendered for st.
func InstanceOwnersSQL(st *Store) string { return st.q(instanceOwnersSelect) }

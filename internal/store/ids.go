package store

import "strings"

// CanonicalID is the one form every workspace id is compared in: the
// lower-case UUID text Postgres prints for a uuid. Job args, CP answers
// and list filters are all brought to it before any comparison, so
// nothing depends on the CP echoing the case it was sent: a CP that
// answered with upper-case ids once made adoption and a terminate's list
// see nothing, and a job with upper-case args listed nothing at all (tag
// filters are case-sensitive).
func CanonicalID(id string) string { return strings.ToLower(id) }

// canonicalIDs applies CanonicalID to each id.
func canonicalIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = CanonicalID(id)
	}
	return out
}

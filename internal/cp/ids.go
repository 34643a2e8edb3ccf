package cp

// ValidWorkspaceID reports whether s is a canonical UUID (8-4-4-4-12 hex
// digits, either case). Ids are checked before they enter a URL because the
// instance and workspace ids we send come back from the CP or the database:
// a hostile or broken answer such as "x/../../admin" must not steer a later
// request to another route.
func ValidWorkspaceID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i], true) {
				return false
			}
		}
	}
	return true
}

// ValidInstanceID reports whether s matches ^i-[0-9a-f]{8,17}$, the EC2
// instance id form. The reference client forwarded a workspace UUID as an
// instance id once (EC2 rejected it as malformed and the stop failed);
// checking the shape also keeps path and query characters out of URLs.
func ValidInstanceID(s string) bool {
	if len(s) < 2+8 || len(s) > 2+17 || s[0] != 'i' || s[1] != '-' {
		return false
	}
	for i := 2; i < len(s); i++ {
		if !isHex(s[i], false) {
			return false
		}
	}
	return true
}

func isHex(c byte, upperOK bool) bool {
	switch {
	case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		return true
	case upperOK && c >= 'A' && c <= 'F':
		return true
	}
	return false
}

package bench

import "strings"

// containsLine reports whether one line of msg (errors.Join output) starts
// with want.
func containsLine(msg, want string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if strings.HasPrefix(l, want) {
			return true
		}
	}
	return false
}

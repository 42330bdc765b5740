package acl

// matchGlob reports whether s matches the glob pattern as Redis's
// stringmatch reads it: * any run, ? one byte, [abc], [^abc], [a-z], and
// \ quoting the next byte. It backtracks only to the last *, so its time
// is bounded by len(pattern)*len(s).
func matchGlob(pattern, s string) bool {
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starI = p, i
				p++
				continue
			case '?':
				p++
				i++
				continue
			case '[':
				if end, ok := matchClass(pattern, p, s[i]); ok {
					p, i = end, i+1
					continue
				}
			case '\\':
				if p+1 < len(pattern) {
					if pattern[p+1] == s[i] {
						p, i = p+2, i+1
						continue
					}
					break
				}
				fallthrough
			default:
				if c == s[i] {
					p++
					i++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starI++
		p, i = starP+1, starI
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchClass matches b against the class that opens at pattern[p] ('[').
// It returns the index after the class and whether b is in it; an
// unterminated class runs to the end of the pattern, as in Redis.
func matchClass(pattern string, p int, b byte) (int, bool) {
	p++
	not := p < len(pattern) && pattern[p] == '^'
	if not {
		p++
	}
	match := false
	for p < len(pattern) && pattern[p] != ']' {
		switch {
		case pattern[p] == '\\' && p+1 < len(pattern):
			p++
			if pattern[p] == b {
				match = true
			}
		case p+2 < len(pattern) && pattern[p+1] == '-':
			lo, hi := pattern[p], pattern[p+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if lo <= b && b <= hi {
				match = true
			}
			p += 2
		default:
			if pattern[p] == b {
				match = true
			}
		}
		p++
	}
	if p < len(pattern) {
		p++ // the ]
	}
	return p, match != not
}

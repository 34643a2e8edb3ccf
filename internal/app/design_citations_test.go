package app_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The design lives in one place, docs/design.md, and code cites its
// invariants by name. A number says nothing to a reader without the old
// external spec, and a path outside the repository is a fact with no home
// in it: these tests keep both kinds of citation out (issue 14).

const (
	repoRoot   = "../.."
	designPath = "docs/design.md"
)

var (
	// invariantDecl is how docs/design.md declares an invariant: a heading
	// with its name in quotes and its old number in parentheses.
	invariantDecl = regexp.MustCompile(`(?m)^### Invariant` + ` "([^"\n]+)" \(([0-9]+)\)\s*$`)
	// numberCite is a citation by number ("invariant" followed by a digit).
	numberCite = regexp.MustCompile(`(?i)\binvariants?\s+\(?[0-9]`)
	// nameCite is a citation by name, possibly a list of quoted names.
	nameCite = regexp.MustCompile(`(?i)\binvariants?\s+("[^"\n]+"(?:\s*(?:,|and|or)\s*"[^"\n]+")*)`)
	quoted   = regexp.MustCompile(`"([^"\n]+)"`)
	// externalSpec names the files that lived outside the repository. The
	// patterns are split so this file does not cite them itself.
	externalSpec = regexp.MustCompile(`shared` + `/(spec|seed)|\b(cp-api|host-platform|style)` + `\.md\b|cp_provisioner` + `\.go\.txt`)
	designRef    = regexp.MustCompile(`design` + `\.md`)
	designAnchor = regexp.MustCompile(`design` + `\.md#([A-Za-z0-9_-]+)`)
	// commentLead is what continues a wrapped comment on the next line.
	commentLead = regexp.MustCompile(`^\s*(//|#|\*|<!--)?\s*`)
	heading     = regexp.MustCompile(`(?m)^#{1,6} +(.+?)\s*$`)
)

// design is what docs/design.md declares: invariant names and anchors.
type design struct {
	names   map[string]bool // lower-cased invariant names
	anchors map[string]bool
}

// parseDesign reads the invariant declarations and headings of text and
// reports what is wrong with them: every old number 0-8 declared once,
// every name unique.
func parseDesign(text string) (design, []string) {
	d := design{names: map[string]bool{}, anchors: map[string]bool{}}
	var problems []string
	numbers := map[int]string{}
	for _, m := range invariantDecl.FindAllStringSubmatch(text, -1) {
		name, num := strings.ToLower(m[1]), m[2]
		n, _ := strconv.Atoi(num)
		if d.names[name] {
			problems = append(problems, fmt.Sprintf("%s: invariant name %q declared twice", designPath, m[1]))
		}
		if prev, ok := numbers[n]; ok {
			problems = append(problems, fmt.Sprintf("%s: old number %d declared for both %q and %q", designPath, n, prev, m[1]))
		}
		d.names[name] = true
		numbers[n] = m[1]
	}
	for n := 0; n <= 8; n++ {
		if _, ok := numbers[n]; !ok {
			problems = append(problems, fmt.Sprintf("%s: no invariant declares old number %d", designPath, n))
		}
	}
	for _, m := range heading.FindAllStringSubmatch(text, -1) {
		d.anchors[anchorOf(m[1])] = true
	}
	return d, problems
}

// anchorOf is the anchor GitHub gives a heading: lower case, punctuation
// other than '-' and '_' dropped, spaces to '-'.
func anchorOf(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// checkCitations reports every bad citation in one file's text: an
// invariant cited by number without a known name beside it, an invariant
// name docs/design.md does not declare, a reference to the external spec,
// a design doc path not under docs/ (outside docs/), and an anchor
// into docs/design.md that no heading there has.
func checkCitations(path, text string, d design) []string {
	var problems []string
	inDocs := strings.HasPrefix(filepath.ToSlash(path), "docs/")
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		at := fmt.Sprintf("%s:%d", path, i+1)
		// A citation may wrap: read this line joined to the next one.
		window := line
		if i+1 < len(lines) {
			window += " " + commentLead.ReplaceAllString(lines[i+1], "")
		}
		for _, loc := range numberCite.FindAllStringIndex(window, -1) {
			if loc[0] >= len(line) {
				continue // the next line's own citation
			}
			if !namesKnown(window, d) {
				problems = append(problems, fmt.Sprintf("%s: invariant cited by number, not by name: %q", at, strings.TrimSpace(line)))
			}
		}
		for _, m := range nameCite.FindAllStringSubmatchIndex(window, -1) {
			if m[0] >= len(line) {
				continue
			}
			for _, q := range quoted.FindAllStringSubmatch(window[m[2]:m[3]], -1) {
				if !d.names[strings.ToLower(q[1])] {
					problems = append(problems, fmt.Sprintf("%s: invariant %q is not declared in %s", at, q[1], designPath))
				}
			}
		}
		if m := externalSpec.FindString(line); m != "" {
			problems = append(problems, fmt.Sprintf("%s: cites the external spec (%s); cite %s", at, m, designPath))
		}
		if !inDocs {
			for _, loc := range designRef.FindAllStringIndex(line, -1) {
				if !strings.HasSuffix(line[:loc[0]], "docs/") {
					problems = append(problems, fmt.Sprintf("%s: cites a design doc outside the repository; cite %s", at, designPath))
				}
			}
		}
		for _, m := range designAnchor.FindAllStringSubmatch(line, -1) {
			if !d.anchors[strings.ToLower(m[1])] {
				problems = append(problems, fmt.Sprintf("%s: %s has no heading for anchor #%s", at, designPath, m[1]))
			}
		}
	}
	return problems
}

// namesKnown reports whether s carries a quoted invariant name that
// docs/design.md declares.
func namesKnown(s string, d design) bool {
	for _, q := range quoted.FindAllStringSubmatch(s, -1) {
		if d.names[strings.ToLower(q[1])] {
			return true
		}
	}
	return false
}

// citingFile reports whether a file of this name can carry a citation.
func citingFile(name string) bool {
	switch filepath.Ext(name) {
	case ".go", ".md", ".yml", ".yaml", ".sql", ".sh":
		return true
	}
	return name == "Makefile" || name == "Dockerfile"
}

// TestDesign_CitationsNameInvariantsInTheRepo walks every module of the
// repository (examples included) and fails on each citation that points
// outside it or names an invariant by number only.
func TestDesign_CitationsNameInvariantsInTheRepo(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, designPath))
	require.NoError(t, err, "the design must live in the repository")
	d, problems := parseDesign(string(b))

	err = filepath.WalkDir(repoRoot, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			switch e.Name() {
			case ".git", "bin", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !citingFile(e.Name()) {
			return nil
		}
		rel, err := filepath.Rel(repoRoot, p)
		if err != nil {
			return fmt.Errorf("rel %s: %w", p, err)
		}
		text, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", rel, err)
		}
		problems = append(problems, checkCitations(rel, string(text), d)...)
		return nil
	})
	require.NoError(t, err)
	sort.Strings(problems)
	require.Empty(t, problems, "%d bad design citations:\n%s", len(problems), strings.Join(problems, "\n"))
}

// TestDesign_CitationCheckerCatches pins what the checker rejects and
// accepts, so a loosened pattern cannot pass the walk vacuously. The
// inputs are built by concatenation so this file never cites anything.
func TestDesign_CitationCheckerCatches(t *testing.T) {
	doc := "# Design\n## Invariants\n" +
		"### Invariant \"no silent stop\" (6)\n"
	for n := 0; n <= 8; n++ {
		if n != 6 {
			doc += fmt.Sprintf("### Invariant \"name %d\" (%d)\n", n, n)
		}
	}
	d, problems := parseDesign(doc)
	require.Empty(t, problems)

	num := "invariant" + " 6"
	tests := []struct {
		name, path, text string
		bad              bool
	}{
		{"number alone", "x.go", "// retried (" + num + ").", true},
		{"plural numbers", "x.go", "// (invariant" + "s 0 and 3)", true},
		{"number wrapped to the next line", "x.go", "// retried (invariant\n// 6).", true},
		{"name", "x.go", "// Invariant \"no silent stop\" (docs/design.md): retried.", false},
		{"name with its old number", "x.go", "// Invariant \"no silent stop\" (" + num + ")", false},
		{"unknown name", "x.go", "// invariant \"no quiet stop\"", true},
		{"unknown name wrapped", "x.go", "// invariant \"no\n// quiet stop\"", true},
		{"known name wrapped", "x.go", "// (invariant \"no\n\t// silent stop\", docs/design.md)", false},
		{"second name of a list unknown", "x.go", "// invariants \"no silent stop\" and \"bogus\"", true},
		{"external spec dir", "x.go", "// see shared" + "/spec/x", true},
		{"external cp spec", "README.md", "as in `cp-api" + ".md`", true},
		{"external host spec", "x.go", "// host-platform" + ".md says", true},
		{"bare design doc outside docs", "x.go", "// design" + ".md's table", true},
		{"design doc in the repo", "x.go", "// docs/design" + ".md's table", false},
		{"relative design doc inside docs", "docs/b.md", "see [design](design" + ".md#invariants)", false},
		{"known anchor", "x.go", "// docs/design" + ".md#invariants", false},
		{"unknown anchor", "x.go", "// docs/design" + ".md#no-such-heading", true},
		{"unrelated words", "x.go", "// the spec's invariants hold; spec := Spec{}", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkCitations(tt.path, tt.text, d)
			if tt.bad {
				require.NotEmpty(t, got)
			} else {
				require.Empty(t, got)
			}
		})
	}

	_, problems = parseDesign("### Invariant \"a\" (0)\n### Invariant \"A\" (0)\n")
	require.NotEmpty(t, problems, "a duplicate name or number, and missing numbers, must be reported")
}

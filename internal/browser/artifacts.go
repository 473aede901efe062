package browser

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/chromedp/chromedp"
	"github.com/clearance/clearance/internal/testkit"
)

// ArtifactsDir is where tests leave files for people to look at:
// $CLEARANCE_TEST_ARTIFACTS (a relative path is taken from the repo root),
// else test-artifacts/ at the repo root, which git ignores.
func ArtifactsDir() (string, error) {
	dir := os.Getenv("CLEARANCE_TEST_ARTIFACTS")
	if filepath.IsAbs(dir) {
		return dir, nil
	}
	root, err := testkit.ModuleRoot()
	if err != nil {
		return "", err
	}
	if dir == "" {
		dir = "test-artifacts"
	}
	return filepath.Join(root, dir), nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// artifactPath is dir/<test>/<subtest>/<name><ext>, each part made safe for
// a file name.
func artifactPath(dir, testName, name, ext string) string {
	parts := []string{dir}
	for _, p := range strings.Split(testName, "/") {
		parts = append(parts, strings.Trim(unsafeName.ReplaceAllString(p, "_"), "._"))
	}
	if name = strings.Trim(unsafeName.ReplaceAllString(name, "_"), "._"); name == "" {
		name = "page"
	}
	return filepath.Join(append(parts, name+ext)...)
}

// Screenshot writes a PNG of the whole page (beyond the window, as far as
// the page goes) to the artifacts directory as <test>/<name>.png, and
// returns its path.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := b.action()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir, err := ArtifactsDir()
	if err != nil {
		b.t.Fatal(err)
	}
	path := artifactPath(dir, b.t.Name(), name, ".png")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return path
}

package xar

import (
	"bytes"
	"compress/zlib"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gxar "github.com/blacktop/go-macho/pkg/xar"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/packaging/internal/testpki"
)

func signed(t *testing.T, id *testpki.Identity) []byte {
	t.Helper()
	w := NewWriter(mtime)
	if err := w.Sign(&Signer{Key: id.Key, Chain: id.Chain}); err != nil {
		t.Fatal(err)
	}
	for _, f := range sample() {
		if err := w.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	b, err := w.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignatureVerifiesIndependently(t *testing.T) {
	openssl := testkit.RequireTool(t, "openssl")
	bsdtar := testkit.RequireTool(t, "bsdtar")
	id := testpki.New(t)
	archive := signed(t, id)
	if !bytes.Equal(archive, signed(t, id)) {
		t.Error("signed archives from the same inputs differ")
	}

	// 1. go-macho's reader checks the chain and the RSA signature.
	r, err := gxar.NewReader(bytes.NewReader(archive), int64(len(archive)))
	if err != nil {
		t.Fatal(err)
	}
	if !r.HasSignature() || r.SignatureError != nil {
		t.Fatalf("go-macho: signed %v, error %v", r.HasSignature(), r.SignatureError)
	}
	if len(r.Certificates) != 2 || !r.Certificates[0].Equal(id.Chain[0]) || !r.Certificates[1].Equal(id.Chain[1]) {
		t.Errorf("certificate chain in TOC differs from the signer's")
	}
	for _, f := range r.Files {
		if !f.VerifyChecksum() {
			t.Errorf("%s: checksum fails in a signed archive", f.Name)
		}
	}

	// 2. openssl, given only bytes located by reading the header and TOC
	//    here: the chain verifies, the TOC checksum is the SHA-1 of the
	//    compressed TOC, and the signature verifies over it.
	dir := t.TempDir()
	ztocLen := binary.BigEndian.Uint64(archive[8:16])
	ztoc := archive[28 : 28+ztocLen]
	heap := archive[28+ztocLen:]
	zr, err := zlib.NewReader(bytes.NewReader(ztoc))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	var toc struct {
		Signature struct {
			Style  string   `xml:"style,attr"`
			Offset int      `xml:"offset"`
			Size   int      `xml:"size"`
			Certs  []string `xml:"KeyInfo>X509Data>X509Certificate"`
		} `xml:"toc>signature"`
		Checksum struct {
			Offset int `xml:"offset"`
			Size   int `xml:"size"`
		} `xml:"toc>checksum"`
	}
	if err := xml.Unmarshal(plain, &toc); err != nil {
		t.Fatal(err)
	}
	if toc.Signature.Style != "RSA" || len(toc.Signature.Certs) != 2 {
		t.Fatalf("TOC signature: style %q, %d certificates", toc.Signature.Style, len(toc.Signature.Certs))
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var pems [2]string
	for i, c := range toc.Signature.Certs {
		der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(c))
		if err != nil {
			t.Fatal(err)
		}
		pems[i] = write("cert"+string(rune('0'+i))+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	ossl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ossl("verify", "-CAfile", pems[1], pems[0])
	ztocFile := write("toc.z", ztoc)
	digestFile := filepath.Join(dir, "digest")
	ossl("dgst", "-sha1", "-binary", "-out", digestFile, ztocFile)
	digest, _ := os.ReadFile(digestFile)
	if !bytes.Equal(heap[toc.Checksum.Offset:toc.Checksum.Offset+toc.Checksum.Size], digest) {
		t.Error("heap checksum is not openssl's SHA-1 of the compressed TOC")
	}
	pubFile := filepath.Join(dir, "pub.pem")
	ossl("x509", "-in", pems[0], "-pubkey", "-noout", "-out", pubFile)
	sigFile := write("sig", heap[toc.Signature.Offset:toc.Signature.Offset+toc.Signature.Size])
	if out := ossl("pkeyutl", "-verify", "-pubin", "-inkey", pubFile, "-pkeyopt", "digest:sha1",
		"-in", digestFile, "-sigfile", sigFile); !strings.Contains(out, "Signature Verified Successfully") {
		t.Errorf("openssl: %s", out)
	}

	// 3. Tampering with the signature is detected.
	bad := bytes.Clone(archive)
	bad[28+int(ztocLen)+toc.Signature.Offset+5] ^= 1
	if r, err := gxar.NewReader(bytes.NewReader(bad), int64(len(bad))); err != nil || r.SignatureError == nil {
		t.Errorf("tampered signature: reader error %v, signature error %v", err, r.SignatureError)
	}

	// 4. A signed archive still lists.
	p := write("signed.xar", archive)
	if out, err := exec.Command(bsdtar, "-tf", p).CombinedOutput(); err != nil || !strings.Contains(string(out), "agent.pkg/Payload") {
		t.Errorf("bsdtar -tf signed: %v\n%s", err, out)
	}
}

func TestSignRejects(t *testing.T) {
	t.Parallel()
	id := testpki.New(t)
	other := testpki.New(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, s := range map[string]*Signer{
		"nil":            nil,
		"no chain":       {Key: id.Key},
		"ecdsa":          {Key: ec, Chain: id.Chain},
		"key not leaf's": {Key: other.Key, Chain: id.Chain},
	} {
		if err := NewWriter(mtime).Sign(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

package scep

import (
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/smallstep/pkcs7"
	smscep "github.com/smallstep/scep"

	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/storage"
)

// SCEP attribute OIDs (RFC 8894 section 3.2.1; smallstep/scep keeps its own unexported).
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
)

const (
	maxTransactionID = 128
	maxNonce         = 64
	// rateWindow is the per-device issuance window of RateLimit.
	rateWindow = 24 * time.Hour
	// auditActor names this endpoint in the audit log.
	auditActor = "scep"
)

// envelope is what a reply is addressed with: the outer SignedData's
// transaction, nonce and signer, read before anything is verified so that
// even a badly signed request gets a CertRep.
type envelope struct {
	transactionID string
	messageType   smscep.MessageType
	senderNonce   []byte
	signer        *x509.Certificate // may be nil
}

// refusal is why a request gets a CertRep FAILURE.
type refusal struct {
	reason Reason // logs and metrics
	info   smscep.FailInfo
	cause  error // for the log only
}

// outage: the store or the CA failed; not the client's fault, and not
// final, so it is an HTTP 503 rather than a CertRep FAILURE.
type outage struct {
	what string
	err  error
}

// parseEnvelope reads the outer SignedData of a PKIOperation message.
func parseEnvelope(msg []byte) (*envelope, error) {
	p7, err := pkcs7.Parse(msg)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS#7 message: %w", err)
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("%d signers, want 1", len(p7.Signers))
	}
	var env envelope
	var tid, mt string
	if err := p7.UnmarshalSignedAttribute(oidTransactionID, &tid); err != nil {
		return nil, fmt.Errorf("transactionID: %w", err)
	}
	if err := p7.UnmarshalSignedAttribute(oidMessageType, &mt); err != nil {
		return nil, fmt.Errorf("messageType: %w", err)
	}
	if err := p7.UnmarshalSignedAttribute(oidSenderNonce, &env.senderNonce); err != nil {
		return nil, fmt.Errorf("senderNonce: %w", err)
	}
	switch {
	case tid == "" || len(tid) > maxTransactionID:
		return nil, fmt.Errorf("transactionID of %d bytes", len(tid))
	case len(env.senderNonce) == 0 || len(env.senderNonce) > maxNonce:
		return nil, fmt.Errorf("senderNonce of %d bytes", len(env.senderNonce))
	}
	env.transactionID, env.messageType = tid, smscep.MessageType(mt)
	env.signer = p7.GetOnlySigner()
	return &env, nil
}

// pkiOperation answers one PKIOperation: 1. read the envelope, 2. check
// the message type and signer, 3. verify and decrypt, 4. check the CSR,
// 5. the challenge, 6. the device, 7. the rate limit, 8. issue and record,
// 9. reply with the certificate.
func (h *Handler) pkiOperation(w http.ResponseWriter, r *http.Request, msg []byte) {
	ctx := r.Context()
	now := h.now()

	// 1. Envelope: without a transaction and nonce there is nobody to
	// address a CertRep to.
	env, err := parseEnvelope(msg)
	if err != nil {
		h.refuseHTTP(w, r, RefuseMalformedMessage, http.StatusBadRequest, err)
		return
	}
	log := h.log.With("transaction_id", env.transactionID, "remote_addr", r.RemoteAddr)

	var o outcome
	h.enroll(ctx, &o, env, msg, now)
	if o.hardwareUUID != "" {
		log = log.With("hardware_uuid", o.hardwareUUID)
	}
	if o.deviceID != "" {
		log = log.With("device_id", o.deviceID)
	}
	switch {
	case o.unav != nil:
		log.Error("scep request failed", "reason", "unavailable", "step", o.unav.what, "error", o.unav.err)
		h.metrics.SCEPRefused("unavailable")
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	case o.fail != nil:
		h.logRefused(log, o.fail.reason, "fail_info", o.fail.info.String(), "error", o.fail.cause)
		h.metrics.SCEPRefused(string(o.fail.reason))
		h.reply(w, log, env, smscep.FAILURE, o.fail.info, nil)
		return
	}
	log.Info("browser certificate issued", "serial", o.rec.Serial, "sha1", o.rec.SHA1, "not_after", o.rec.NotAfter)
	h.metrics.SCEPIssued()
	h.reply(w, log, env, smscep.SUCCESS, "", o.cert)
}

// outcome of enroll: exactly one of cert (with rec), fail and unav is set.
type outcome struct {
	cert         *x509.Certificate
	rec          storage.BrowserCert
	fail         *refusal
	unav         *outage
	hardwareUUID string // for the log, once known
	deviceID     string
}

func (o *outcome) refuse(reason Reason, info smscep.FailInfo, format string, args ...any) {
	o.fail = &refusal{reason: reason, info: info, cause: fmt.Errorf(format, args...)}
}

func (o *outcome) unavailable(what string, err error) { o.unav = &outage{what, err} }

// enroll runs steps 2 to 8.
func (h *Handler) enroll(ctx context.Context, o *outcome, env *envelope, msg []byte, now time.Time) {
	// 2. What is asked, and can the answer be encrypted to the asker?
	switch env.messageType {
	case smscep.PKCSReq:
	case smscep.RenewalReq, smscep.UpdateReq:
		o.refuse(RefuseRenewalNotSupported, smscep.BadRequest, "message type %s", env.messageType)
		return
	default:
		o.refuse(RefuseUnsupportedMessageType, smscep.BadRequest, "message type %.10q", string(env.messageType))
		return
	}
	if env.signer == nil {
		o.refuse(RefuseBadSignature, smscep.BadMessageCheck, "no certificate for the signer")
		return
	}
	if _, ok := env.signer.PublicKey.(*rsa.PublicKey); !ok {
		// pkcs7 encrypts only to RSA keys, so a CertRep SUCCESS could not be read.
		o.refuse(RefuseSignerKeyNotRSA, smscep.BadAlg, "signer key %s", env.signer.PublicKeyAlgorithm)
		return
	}

	// 3. Signature, then the envelope (encrypted to the RA).
	pm, err := smscep.ParsePKIMessage(msg)
	if err != nil {
		var badTime *pkcs7.SigningTimeNotValidError
		if errors.As(err, &badTime) {
			o.refuse(RefuseBadTime, smscep.BadTime, "%v", err)
			return
		}
		o.refuse(RefuseBadSignature, smscep.BadMessageCheck, "%v", err)
		return
	}
	if err := pm.DecryptPKIEnvelope(h.ra.Cert, h.ra.Key); err != nil {
		if errors.Is(err, pkcs7.ErrUnsupportedAlgorithm) {
			o.refuse(RefuseUnsupportedEncryption, smscep.BadAlg, "%v", err)
			return
		}
		o.refuse(RefuseBadEnvelope, smscep.BadMessageCheck, "%v", err)
		return
	}
	csr, challenge := pm.CSR, pm.ChallengePassword

	// 4. The CSR.
	hardwareUUID, err := CheckCSR(csr)
	if err != nil {
		var ce *CSRError
		reason := RefuseBadCSR
		if errors.As(err, &ce) {
			reason = ce.Reason
		}
		o.refuse(reason, smscep.BadRequest, "%v", err)
		return
	}
	o.hardwareUUID = hardwareUUID

	// 5. The challenge: the static one, or a usable one-time one (only its
	// hash is stored). Before the device, so that nobody without a
	// challenge learns which Macs are enrolled.
	var challengeHash []byte
	switch sum := sha256.Sum256([]byte(challenge)); {
	case challenge == "":
		o.refuse(RefuseBadChallenge, smscep.BadRequest, "no challengePassword")
		return
	case h.hasStatic && subtle.ConstantTimeCompare(sum[:], h.static[:]) == 1:
	default:
		ok, err := h.store.SCEPChallengeUsable(ctx, sum[:], now)
		if err != nil {
			o.unavailable("checking challenge", err)
			return
		}
		if !ok {
			o.refuse(RefuseBadChallenge, smscep.BadRequest, "challenge is neither the static one nor a usable one-time one")
			return
		}
		challengeHash = sum[:]
	}

	// 6. The Mac must be enrolled and not revoked.
	dev, err := h.store.GetDeviceByHardwareUUID(ctx, hardwareUUID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		o.refuse(RefuseUnknownDevice, smscep.BadRequest, "no enrolled device has this hardware UUID")
		return
	case err != nil:
		o.unavailable("reading device", err)
		return
	case dev.Revoked():
		o.refuse(RefuseDeviceRevoked, smscep.BadRequest, "device %s revoked", dev.ID)
		return
	}

	o.deviceID = dev.ID

	// 7. Per-device rate limit: a read, so that a flood past it takes no
	// write lock; the count that holds is taken again when the
	// certificate is recorded, behind the device row's lock. Both count
	// the window before the certificate's NotBefore (Backdate before
	// issue).
	limit := storage.IssueLimit{Certs: h.rateLimit, Per: rateWindow}
	n, err := h.store.CountBrowserCertsSince(ctx, dev.ID, now.Add(-ca.Backdate-rateWindow))
	if err != nil {
		o.unavailable("counting certificates", err)
		return
	}
	if n >= h.rateLimit {
		o.refuse(RefuseRateLimited, smscep.BadRequest, "device %s has %d certificates in 24h, limit %d", dev.ID, n, h.rateLimit)
		return
	}

	// 8. Issue, and record (consuming a one-time challenge) before
	// anything is sent: a certificate that is not recorded never leaves.
	cert, err := h.issuer.IssueBrowserCert(csr.PublicKey, hardwareUUID, h.lifetime)
	if err != nil {
		o.unavailable("issuing certificate", err)
		return
	}
	fp := sha1.Sum(cert.Raw)
	rec := storage.BrowserCert{
		Cert: storage.Cert{
			Serial:    ca.SerialHex(cert),
			DeviceID:  dev.ID,
			Kind:      storage.CertKindBrowser,
			NotBefore: cert.NotBefore,
			NotAfter:  cert.NotAfter,
			DER:       cert.Raw,
		},
		HardwareUUID: hardwareUUID,
		SHA1:         hex.EncodeToString(fp[:]),
	}
	kind := "static"
	if challengeHash != nil {
		kind = "one_time"
	}
	audit := storage.AuditEvent{
		At:       now,
		Actor:    auditActor,
		Action:   "browsercert.issue",
		DeviceID: dev.ID,
		Detail:   fmt.Sprintf("serial %s sha1 %s hardware_uuid %s challenge %s", rec.Serial, rec.SHA1, hardwareUUID, kind),
	}
	switch err := h.store.RecordBrowserCert(ctx, rec, challengeHash, limit, now, audit); {
	case err == nil:
	case errors.Is(err, storage.ErrTooManyCerts):
		// Concurrent requests for one Mac passed the read above together.
		o.refuse(RefuseRateLimited, smscep.BadRequest, "device %s reached its limit of %d certificates in 24h while issuing", dev.ID, h.rateLimit)
		return
	case errors.Is(err, storage.ErrDeviceRevoked):
		o.refuse(RefuseDeviceRevoked, smscep.BadRequest, "device %s revoked", dev.ID)
		return
	case errors.Is(err, storage.ErrNotFound) && challengeHash != nil:
		// The device was found a moment ago: the challenge went, to a
		// concurrent request or by expiring.
		o.refuse(RefuseChallengeUsed, smscep.BadRequest, "one-time challenge used or expired while issuing")
		return
	case errors.Is(err, storage.ErrNotFound):
		o.refuse(RefuseUnknownDevice, smscep.BadRequest, "device %s gone while issuing", dev.ID)
		return
	default:
		o.unavailable("recording certificate", err)
		return
	}
	o.cert, o.rec = cert, rec
}

package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// testPKI is a CA and one certificate for 127.0.0.1, as files for
// redis-server and as Go values for the relay.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	cert                      tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis-relay test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p := &testPKI{caFile: filepath.Join(dir, "ca.crt"), certFile: filepath.Join(dir, "relay.crt"), keyFile: filepath.Join(dir, "relay.key")}
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, "CERTIFICATE", caDER)
	write(p.certFile, "CERTIFICATE", der)
	write(p.keyFile, "EC PRIVATE KEY", keyDER)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	p.cert, err = tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *testPKI) redisArgs() []string {
	return []string{"--tls-cert-file", p.certFile, "--tls-key-file", p.keyFile, "--tls-ca-cert-file", p.caFile}
}

// TestTLSBothWays: master -> relay over TLS, relay -> replica over TLS.
func TestTLSBothWays(t *testing.T) {
	pki := newTestPKI(t)
	tlsPort := redistest.FreePort(t)
	master := redistest.Start(t, append(pki.redisArgs(), "--tls-port", strconv.Itoa(tlsPort), "--tls-auth-clients", "optional")...)
	populate(t, master, 0, 2000)

	relay := startRelay(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)), func(c *Config) {
		c.UpstreamTLS = &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.cert}, MinVersion: tls.VersionTLS12}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pki.cert}, MinVersion: tls.VersionTLS12})
	go relay.srv.Serve(t.Context(), tlsLn)

	replica := redistest.Start(t, append(pki.redisArgs(), "--tls-replication", "yes", "--replicaof", "127.0.0.1", strconv.Itoa(listenerPort(ln)))...)
	inSync(t, 20*time.Second, master, replica)
	writeKeys(t, master, 1, 300)
	inSync(t, 20*time.Second, master, replica)

	// A plain-text client on the TLS port gets nowhere.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("PING\r\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	if n, _ := c.Read(buf); n > 0 && string(buf[:5]) == "+PONG" {
		t.Fatal("plain PING answered on the TLS port")
	}
}

// TestSnapshotSourceTLS: the master link and the snapshot source's each
// use their own TLS setting: one relay reaches the master over TLS and
// its source in plain text, the other the reverse.
func TestSnapshotSourceTLS(t *testing.T) {
	pki := newTestPKI(t)
	clientTLS := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.cert}, MinVersion: tls.VersionTLS12}
	masterTLS, spareTLS := redistest.FreePort(t), redistest.FreePort(t)
	master := redistest.Start(t, append(pki.redisArgs(), "--tls-port", strconv.Itoa(masterTLS), "--repl-backlog-size", "64mb")...)
	populate(t, master, 0, 2000)
	spare := replicaOf(t, master.HostPort, append(pki.redisArgs(), "--tls-port", strconv.Itoa(spareTLS))...)
	inSync(t, 20*time.Second, master, spare)
	writeKeys(t, master, 1, 100)
	tlsAddr := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	r1 := startRelay(t, tlsAddr(masterTLS), func(c *Config) {
		c.UpstreamTLS = clientTLS
		c.SnapshotSource = spare.Addr()
	})
	r2 := startRelay(t, master.Addr(), func(c *Config) {
		c.SnapshotSource = tlsAddr(spareTLS)
		c.SnapshotSourceTLS = clientTLS
	})
	leaves := []*redistest.Server{replicaOf(t, r1.HostPort), replicaOf(t, r2.HostPort)}
	writeKeys(t, master, 2, 100)
	inSync(t, 30*time.Second, master, leaves...)
	for _, r := range []*testRelay{r1, r2} {
		if n := r.Status().ForksAvoided; n != 1 {
			t.Errorf("relay %s master_forks_avoided = %d, want 1", r.Addr(), n)
		}
	}
	if n := master.InfoInt(t, "sync_full"); n != 1 {
		t.Errorf("master sync_full = %d, want 1 (the stock replica's)", n)
	}
}

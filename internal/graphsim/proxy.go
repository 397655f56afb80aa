package graphsim

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Proxy is an HTTPS proxy that intercepts TLS, as corporate proxies do: it
// accepts CONNECT to any host, presents a certificate for that host signed
// by its own CA, and serves the simulator there. It lets a test reach the
// simulator under a national cloud's real host names (graph.microsoft.us,
// login.microsoftonline.us…) with TLS verified against CAPEM.
type Proxy struct {
	URL   string // http://127.0.0.1:port, for https_proxy
	CAPEM []byte // the CA to trust (tls_ca_file)

	ln      net.Listener
	ca      *x509.Certificate
	key     *rsa.PrivateKey
	handler http.Handler
	mu      sync.Mutex
	certs   map[string]*tls.Certificate
	hosts   map[string]int
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// StartProxy starts a proxy in front of s on loopback, closed at the end of
// the test.
func StartProxy(t testing.TB, s *Server) *Proxy {
	t.Helper()
	p, err := NewProxy(s.Handler(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// NewProxy starts a proxy serving h on addr, which must be a loopback
// address.
func NewProxy(h http.Handler, addr string) (*Proxy, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "graphsim interception CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(der)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		ln.Close()
		return nil, &net.AddrError{Err: "the proxy listens on loopback only", Addr: addr}
	}
	p := &Proxy{
		URL:     "http://" + ln.Addr().String(),
		CAPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		ln:      ln,
		ca:      ca,
		key:     key,
		handler: h,
		certs:   map[string]*tls.Certificate{},
		hosts:   map[string]int{},
		conns:   map[net.Conn]bool{},
	}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Hosts counts the CONNECT requests by host.
func (p *Proxy) Hosts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.hosts {
		out[k] = v
	}
	return out
}

// Close stops the proxy and ends its connections.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.conn(c)
		}()
	}
}

func (p *Proxy) conn(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = true
	p.mu.Unlock()
	defer func() {
		c.Close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	c.SetDeadline(time.Now().Add(time.Minute))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		c.Write([]byte("HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	host := req.URL.Hostname()
	if host == "" {
		host, _, _ = strings.Cut(req.Host, ":")
	}
	p.mu.Lock()
	p.hosts[host]++
	p.mu.Unlock()
	c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	tc := tls.Server(c, &tls.Config{GetCertificate: p.certFor})
	if err := tc.Handshake(); err != nil {
		return
	}
	l := &oneConn{c: tc, done: make(chan struct{})}
	srv := &http.Server{Handler: p.handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-l.done; srv.Close() }()
	srv.Serve(l)
}

func (p *Proxy) certFor(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.certs[name]; ok {
		return c, nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	p.certs[name] = c
	return c, nil
}

// oneConn is a listener that yields one connection, then reports done when
// that connection closes.
type oneConn struct {
	c    net.Conn
	once sync.Once
	done chan struct{}
	used bool
	mu   sync.Mutex
}

func (l *oneConn) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.used {
		l.used = true
		l.mu.Unlock()
		return &closeNotify{Conn: l.c, l: l}, nil
	}
	l.mu.Unlock()
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConn) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *oneConn) Addr() net.Addr { return l.c.LocalAddr() }

type closeNotify struct {
	net.Conn
	l *oneConn
}

func (c *closeNotify) Close() error {
	err := c.Conn.Close()
	c.l.Close()
	return err
}

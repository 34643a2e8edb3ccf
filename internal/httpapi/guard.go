package httpapi

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// MaxUIBody caps a River UI request body. Its API takes a few job ids at
// a time; one 300 MB POST raised the worker's RSS from 25 MB to 642 MB.
const MaxUIBody = 1 << 20

// Timeouts bound the worker's HTTP connections.
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// DefaultTimeouts: a review found a kept-alive connection left idle stayed
// open forever (no IdleTimeout), and a body sent a byte at a time held
// its goroutine as long as the sender liked (no ReadTimeout). River UI's
// API answers in milliseconds and its bodies are capped at MaxUIBody, so
// these are generous.
var DefaultTimeouts = Timeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second,
	Write: 60 * time.Second, Idle: 2 * time.Minute}

// NewHTTPServer is the worker's http.Server for h, with t's timeouts.
func NewHTTPServer(h http.Handler, t Timeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read,
		WriteTimeout: t.Write, IdleTimeout: t.Idle}
}

// noFraming forbids every page from being framed, so a hostile page
// cannot overlay River UI's Retry/Cancel/Delete buttons (clickjacking).
func noFraming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}

// loopbackHostOnly serves only requests whose Host names loopback. With
// no credentials the worker listens on loopback only, but a browser
// visiting a DNS-rebinding page (rebind.attacker.example resolving to
// 127.0.0.1) sends its requests there with the attacker's Host, and the
// page is then same-origin with River UI: a review listed jobs, deleted
// one and paused the terminate queue that way.
//
// The peer must be loopback too: cmd/worker refuses a non-loopback
// listener without credentials, but an embedded worker's Handler is
// mounted on the host's own listener, which this package cannot see, and
// the Host header is the client's to write. A review paused the terminate
// queue from a public address by sending Host: 127.0.0.1.
func loopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !LoopbackHost(r.Host) || !loopbackPeer(r.RemoteAddr) {
			http.Error(w, "forbidden: without credentials only loopback clients are served", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackPeer reports whether a request's RemoteAddr is a loopback IP.
func loopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoopbackHost reports whether a Host header (with or without a port)
// is "localhost", an address in 127.0.0.0/8 or ::1.
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// uiGuard refuses cross-site writes and caps bodies before River UI sees
// a request. River UI trusts any request that reaches it, and a browser
// attaches cached basic-auth credentials to a cross-site form post too: a
// review cancelled a job with a text/plain POST from another origin.
func uiGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				http.Error(w, "forbidden: cross-origin request", http.StatusForbidden)
				return
			}
			if !uiContentType(r) {
				http.Error(w, "unsupported content type: send application/json", http.StatusUnsupportedMediaType)
				return
			}
		}
		if r.ContentLength > MaxUIBody {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxUIBody)
		next.ServeHTTP(w, r)
	})
}

// sameOrigin requires proof from the browser that the request comes from
// a page of this origin: Sec-Fetch-Site "same-origin", or an Origin whose
// host and port are the request's Host. A request proving neither is
// refused (every browser of the last five years sends one of them on a
// non-GET request, and tools can set Origin).
func sameOrigin(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" {
		return false
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		return originMatchesHost(origin, r.Host)
	}
	return site == "same-origin"
}

// originMatchesHost compares an Origin with a Host, treating an explicit
// default port (":443" for https, ":80" for http) as absent on both.
func originMatchesHost(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes "null" (sandboxed frames, file: pages)
	}
	def := map[string]string{"http": ":80", "https": ":443"}[u.Scheme]
	return strings.EqualFold(strings.TrimSuffix(u.Host, def), strings.TrimSuffix(host, def))
}

// uiContentType accepts JSON, and the two shapes River UI's own frontend
// (v0.22) sends: its fetch calls post JSON without naming a content type,
// so the browser labels them "text/plain;charset=UTF-8", and pause and
// resume are PUTs with no body. Requiring JSON alone would break Retry
// in River UI itself; text/plain is safe here only because sameOrigin
// has already refused every cross-site request. Form encodings are
// refused: nothing legitimate sends them.
func uiContentType(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return r.ContentLength == 0
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || mt == "text/plain")
}

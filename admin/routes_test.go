package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// What the router answers by itself: the method rules, HEAD, the record
// key's forms, and its JSON errors.
func TestRoutes(t *testing.T) {
	a := newTestAPI(t, nil)
	a.scenario(t)
	serve := func(method, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		w := httptest.NewRecorder()
		a.handler.ServeHTTP(w, req)
		return w
	}
	jsonError := func(t *testing.T, w *httptest.ResponseRecorder) string {
		t.Helper()
		var body errorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == "" {
			t.Errorf("body %q is not a JSON error (%v)", w.Body, err)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		return body.Error
	}

	t.Run("a wrong method is 405 with the allowed ones", func(t *testing.T) {
		w := serve(http.MethodPost, "/v1/records/"+escapeKey(keyPending))
		if w.Code != http.StatusMethodNotAllowed {
			t.Fatalf("POST a record: %d", w.Code)
		}
		allow := w.Header().Get("Allow")
		for _, m := range []string{http.MethodGet, http.MethodDelete} {
			if !strings.Contains(allow, m) {
				t.Errorf("Allow %q lacks %s", allow, m)
			}
		}
		if msg := jsonError(t, w); !strings.Contains(msg, "not allowed") {
			t.Errorf("error %q", msg)
		}
	})
	t.Run("an unknown path is 404", func(t *testing.T) {
		for _, path := range []string{"/", "/v1", "/v1/records/", "/v1/statsx"} {
			w := serve(http.MethodGet, path)
			if w.Code != http.StatusNotFound {
				t.Errorf("GET %s: %d", path, w.Code)
			}
			if msg := jsonError(t, w); !strings.Contains(msg, "no such endpoint") {
				t.Errorf("GET %s: error %q", path, msg)
			}
		}
		if w := serve(http.MethodDelete, "/v1/records/"); w.Code != http.StatusNotFound {
			t.Errorf("DELETE of an empty key: %d, want 404", w.Code)
		}
	})
	t.Run("HEAD is served as GET", func(t *testing.T) {
		w := serve(http.MethodHead, "/v1/stats")
		if w.Code != http.StatusOK {
			t.Errorf("HEAD /v1/stats: %d", w.Code)
		}
	})
	t.Run("a key's slash may come escaped or not", func(t *testing.T) {
		for _, path := range []string{
			"/v1/records/" + escapeKey(keyPending),
			"/v1/records/" + strings.ReplaceAll(keyPending, " ", "%20"),
		} {
			w := serve(http.MethodGet, path)
			var e Entry
			if err := json.Unmarshal(w.Body.Bytes(), &e); w.Code != http.StatusOK || err != nil || e.Key != keyPending {
				t.Errorf("GET %s: %d %s", path, w.Code, w.Body)
			}
		}
	})
}

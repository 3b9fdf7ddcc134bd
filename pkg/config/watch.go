package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// DefaultWatchInterval is how often a Watcher polls its file by default.
const DefaultWatchInterval = time.Second

// racyWindow is how close to a read a file's modification time must be for
// the file to be re-read although its size and mtime did not change:
// file systems record mtime with a granularity of up to a few milliseconds
// (seconds on some), so a second write of the same size within that
// granularity leaves both unchanged. Git calls this the "racy clean"
// problem; the fix is the same.
const racyWindow = 2 * time.Second

// Watcher reloads a configuration file when it changes, when one of the
// files it names changes (Config.SideFiles: keys files, JWKS files) and
// when the process receives SIGHUP, and hands every valid new Config to
// OnReload. A
// file that fails to parse leaves the current Config in place: the error
// goes to OnError and the logger, and the next change is tried again.
//
// Changes are found by polling rather than with inotify: polling sees
// atomic renames (editors, Kubernetes ConfigMap volumes) and network file
// systems the same way, needs no dependency, and a small file stat'ed once
// a second costs nothing. A change is the file's size or mtime changing
// (confirmed by a content hash, so a touch does not reload) or, while the
// mtime is too recent to trust, the content hash changing.
//
// Configure the fields before calling Run; do not change them after.
type Watcher struct {
	// Path is the file to watch.
	Path string

	// Schema parses it. Required.
	Schema *Schema

	// Initial is the Config already in use, loaded from Path. When nil,
	// Run loads the file first, fails if it is invalid, and passes it to
	// OnReload.
	Initial *Config

	// OnReload receives each new valid Config, on Run's goroutine, one at a
	// time. Required.
	OnReload func(*Config)

	// OnError, if set, receives each failed reload (also logged). The
	// previous Config stays in effect.
	OnError func(error)

	// Interval is the polling period (default DefaultWatchInterval); a
	// negative value disables polling, leaving only signals.
	Interval time.Duration

	// Signals, when set, replaces SIGHUP as the reload trigger: every value
	// received forces a reload, even of unchanged content. When nil, Run
	// subscribes to SIGHUP with signal.Notify for its own lifetime, which
	// also stops SIGHUP from terminating the process.
	Signals <-chan os.Signal

	// Logger receives reload outcomes (default slog.Default()).
	Logger *slog.Logger
}

// fileState is what the watcher remembers of the file between polls.
type fileState struct {
	size    int64
	modTime time.Time
	readAt  time.Time
	digest  string // hash of the content last read, or of the read error
}

// Run watches until ctx is done, then returns nil. It returns an error only
// when the watcher is misconfigured or, with Initial nil, the first load
// fails.
func (w *Watcher) Run(ctx context.Context) error {
	if w.OnReload == nil {
		return errors.New("config watcher: OnReload is required")
	}
	if w.Schema == nil {
		return errors.New("config watcher: Schema is required")
	}
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("path", w.Path)

	sigs := w.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		defer signal.Stop(ch)
		sigs = ch
	}

	cur := w.Initial
	var st fileState
	if cur == nil {
		cfg, data, fi, err := w.load()
		if err != nil {
			return fmt.Errorf("config watcher: initial load: %w", err)
		}
		cur = cfg
		st = fileState{size: fi.Size(), modTime: fi.ModTime(), readAt: time.Now(), digest: hashOf(data)}
		w.OnReload(cfg)
	} else {
		// Stat now so that an unchanged file is not reloaded at the first
		// tick; the content is assumed to be Initial's.
		st.digest = cur.Digest
		if fi, err := os.Stat(w.Path); err == nil {
			st.size, st.modTime, st.readAt = fi.Size(), fi.ModTime(), time.Now()
		}
	}

	var tick <-chan time.Time
	if w.Interval >= 0 {
		interval := w.Interval
		if interval == 0 {
			interval = DefaultWatchInterval
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}

	side := map[string]*sideState{}
	reload := func(force bool, why string) {
		if !force {
			switch {
			case w.sideFileChanged(cur, side):
				force, why = true, "side file change"
			case !w.changed(&st):
				return
			}
		}
		cfg, data, fi, err := w.load()
		digest := "error:" // an unreadable file is remembered by its error
		if data != nil {
			digest = hashOf(data)
		} else {
			digest += err.Error()
		}
		if fi != nil {
			st.size, st.modTime = fi.Size(), fi.ModTime()
		}
		st.readAt = time.Now()
		if !force && digest == st.digest {
			return // touched, or rewritten with the same content
		}
		st.digest = digest
		if err != nil {
			log.Error("configuration reload failed; keeping the previous configuration",
				"trigger", why, "digest", cur.Digest, "err", err)
			if w.OnError != nil {
				w.OnError(err)
			}
			return
		}
		log.Info("configuration reloaded", "trigger", why, "digest", cfg.Digest, "previous", cur.Digest)
		cur = cfg
		w.OnReload(cfg)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-sigs:
			reload(true, "signal "+s.String())
		case <-tick:
			reload(false, "file change")
		}
	}
}

// changed reports whether the file may have changed since st was taken.
func (w *Watcher) changed(st *fileState) bool {
	fi, err := os.Stat(w.Path)
	if err != nil {
		// Let load report it; it is reported once, because the error
		// becomes the remembered digest.
		return true
	}
	if fi.Size() != st.size || !fi.ModTime().Equal(st.modTime) {
		return true
	}
	return st.readAt.Sub(fi.ModTime()) < racyWindow
}

// sideState is what the watcher remembers of a side file between polls.
type sideState struct {
	size    int64
	modTime time.Time
	readAt  time.Time
	seen    string // digest of the content last read, or "error:" and the error
}

// sideFileChanged reports whether a file the current configuration was
// built from (a keys file, a JWKS file) now has other content than it was
// built from. A file is read only when its size or mtime changed, or its
// mtime is too recent to trust (as for the main file); a file that cannot
// be read counts as changed once per distinct error, so a deleted file
// fails one reload, not one per poll.
func (w *Watcher) sideFileChanged(cur *Config, side map[string]*sideState) bool {
	changed := false
	for _, f := range cur.SideFiles {
		s := side[f.Path]
		if s == nil {
			s = &sideState{seen: f.Digest}
			side[f.Path] = s
		}
		fi, err := os.Stat(f.Path)
		if err == nil && fi.Size() == s.size && fi.ModTime().Equal(s.modTime) && s.readAt.Sub(fi.ModTime()) >= racyWindow {
			continue
		}
		seen := "error:"
		if err == nil {
			s.size, s.modTime, s.readAt = fi.Size(), fi.ModTime(), time.Now()
			data, rerr := os.ReadFile(f.Path)
			if rerr == nil {
				seen = hashOf(data)
			} else {
				seen += rerr.Error()
			}
		} else {
			seen += err.Error()
		}
		if seen != s.seen && seen != f.Digest {
			changed = true
		}
		s.seen = seen
	}
	return changed
}

// load reads and parses the file, returning the bytes read (nil when it
// could not be read) and their FileInfo.
func (w *Watcher) load() (*Config, []byte, os.FileInfo, error) {
	f, err := os.Open(w.Path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading configuration: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading configuration: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fi, fmt.Errorf("reading configuration: %w", err)
	}
	cfg, err := w.Schema.Parse(w.Path, data)
	return cfg, data, fi, err
}

func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

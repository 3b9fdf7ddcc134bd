package config

import (
	"errors"
	"fmt"
	"strings"
)

// Error is one problem in a configuration file. Parse returns every Error it
// finds joined with errors.Join, so that an operator fixes a file in one
// pass; use errors.As to inspect one.
//
// Its message names the file, the document and the field, for example
//
//	standalone.yaml: document 3 (InferencePool "llama"): spec.targetPorts[0].number: must be 1..65535
type Error struct {
	// File is the name given to Parse (the path, for Load).
	File string
	// Document is the 1-based index of the document among the file's
	// non-empty documents, or 0 when the problem is not in one document.
	Document int
	// Line is the line of the file where the document starts (1-based), or
	// 0 when Document is 0.
	Line int
	// Kind and Name identify the document's object, as far as known.
	Kind, Name string
	// Field is the path of the offending field, e.g.
	// "spec.targetPorts[0].number", or "" for the whole document.
	Field string
	// Err says what is wrong.
	Err error
}

// Error renders "file: document N (Kind \"name\"): field: problem".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.location())
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	if e.Err == nil {
		b.WriteString("invalid")
	} else {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// location renders the file and document part of the message.
func (e *Error) location() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Document > 0 {
		fmt.Fprintf(&b, ": document %d", e.Document)
		switch {
		case e.Kind != "" && e.Name != "":
			fmt.Fprintf(&b, " (%s %q)", e.Kind, e.Name)
		case e.Kind != "":
			fmt.Fprintf(&b, " (%s)", e.Kind)
		}
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// docRef identifies the document an error is reported against.
type docRef struct {
	file  string
	index int
	line  int
	kind  string
	name  string // "name", or "namespace/name" outside the default namespace
}

// errorList collects errors for one Parse call.
type errorList struct {
	errs []error
}

// add records err at field of doc.
func (l *errorList) add(doc docRef, field string, err error) {
	l.errs = append(l.errs, &Error{
		File: doc.file, Document: doc.index, Line: doc.line,
		Kind: doc.kind, Name: doc.name, Field: field, Err: err,
	})
}

// addf records a formatted message at field of doc.
func (l *errorList) addf(doc docRef, field, format string, args ...any) {
	l.add(doc, field, fmt.Errorf(format, args...))
}

func (l *errorList) err() error { return errors.Join(l.errs...) }

func (l *errorList) len() int { return len(l.errs) }

package main

import (
	"github.com/igw-dev/igw/pkg/config"
	"github.com/igw-dev/igw/pkg/engine"
	"github.com/igw-dev/igw/pkg/gateway"
)

// configSchema is what igw's configuration files may hold: every kind the
// engine builds from, and the standalone gateway's listeners. igw serve,
// igw demo and igw epp read files with the same schema, so one file moves
// between them unchanged (igw epp applies a Gateway's request bounds and
// ignores its listeners).
func configSchema() *config.Schema { return engine.Schema(gateway.Kind()) }

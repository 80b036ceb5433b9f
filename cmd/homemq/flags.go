package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"homemq/auth"
	"homemq/broker"
)

// The flags that say which broker a command acts on. Every command that
// takes one declares it with commonFlags.add, so each has one name, one
// help line and one default across the CLI.
const (
	flagData   = "data"
	flagConfig = "config"
	flagServer = "server"
)

// commonUsage is the help line of each shared flag. The back-quoted word
// is the value's name in the usage (-data DIR).
var commonUsage = map[string]string{
	flagData:   "`DIR` is the broker's data folder (default: data: of --config, else ./homemq-data)",
	flagConfig: "`FILE` is the broker's YAML config",
	flagServer: "`HOST:PORT` is the running broker's HTTPS address (default: listeners.https of --config, else 127.0.0.1:8443)",
}

// registryFlags is the synopsis of the shared flags of the commands that
// change the registry, keys or revocations (home, agent, member, keys,
// revoke), for their usage texts.
const registryFlags = "[--data DIR] [--config FILE] [--server HOST:PORT]"

// eachAlsoTakes ends the usage of a command with verbs whose verbs all
// take the registry's shared flags.
const eachAlsoTakes = "each also takes " + registryFlags

// commonFlags holds the values of the shared flags a command declared.
type commonFlags struct {
	data, config, server string
}

// add declares the shared flags named in which (flagData, flagConfig,
// flagServer) on fs.
func (c *commonFlags) add(fs *flag.FlagSet, which ...string) {
	for _, name := range which {
		var p *string
		switch name {
		case flagData:
			p = &c.data
		case flagConfig:
			p = &c.config
		case flagServer:
			p = &c.server
		default:
			panic("commonFlags.add: no shared flag " + name)
		}
		fs.StringVar(p, name, "", commonUsage[name])
	}
}

// loadConfig returns the broker's config as the flags give it: the
// --config file, or DefaultConfig without one, with its data folder
// replaced by --data when that is given.
func (c *commonFlags) loadConfig() (broker.Config, error) {
	cfg := broker.DefaultConfig()
	if c.config != "" {
		var err error
		if cfg, err = broker.LoadConfig(c.config); err != nil {
			return cfg, err
		}
	}
	if c.data != "" {
		cfg.Data = c.data
	}
	return cfg, nil
}

// loadDataFolder is loadConfig for a command that reads the broker's data
// folder: it fails, writing nothing, when the folder holds no signing key.
func (c *commonFlags) loadDataFolder() (broker.Config, error) {
	cfg, err := c.loadConfig()
	if err != nil {
		return cfg, err
	}
	if _, err := os.Stat(filepath.Join(cfg.Data, auth.KeysFile)); err != nil {
		return cfg, fmt.Errorf("%s is not a homemq data folder (no %s): run 'homemq serve --data %s' once, or pass the right --data", cfg.Data, auth.KeysFile, cfg.Data)
	}
	return cfg, nil
}

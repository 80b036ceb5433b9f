package main

import (
	"fmt"
	"io"
	"path/filepath"

	"homemq/certs"
)

func init() {
	register("certs", "make a CA (certs init) and leaf certificates (certs issue) for real deployments", certsCmd)
}

const certsUsage = "usage: homemq certs init --dir DIR | homemq certs issue --ca DIR --name NAME [--name …] --out PREFIX [--client]"

func certsCmd(args []string, stdout, stderr io.Writer) error {
	if done, err := needsVerb(args, stdout, certsUsage); done {
		return err
	}
	switch args[0] {
	case "init":
		fs := newFlags("certs init", stderr)
		dir := fs.String("dir", "./homemq-ca", "folder for ca.pem and ca-key.pem")
		name := fs.String("name", "homemq CA", "the CA's common name")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ca, err := certs.NewAuthority(*name)
		if err != nil {
			return err
		}
		if err := ca.Save(*dir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "CA written: %s (keep %s secret and offline)\n", filepath.Join(*dir, certs.CAFile), filepath.Join(*dir, certs.CAKeyFile))
		return nil
	case "issue":
		fs := newFlags("certs issue", stderr)
		caDir := fs.String("ca", "./homemq-ca", "the CA folder made by certs init")
		var names multiFlag
		fs.Var(&names, "name", "DNS name or IP address the certificate is for; repeatable")
		out := fs.String("out", "server", "write PREFIX.pem and PREFIX-key.pem")
		client := fs.Bool("client", false, "a client certificate (for agents with mTLS) instead of a server one")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ca, err := certs.LoadAuthority(*caDir)
		if err != nil {
			return err
		}
		usage := certs.ServerUsage
		if *client {
			usage = certs.ClientUsage
		}
		cert, key, err := ca.Issue(names, usage)
		if err != nil {
			return err
		}
		if err := certs.WriteLeaf(*out+".pem", *out+"-key.pem", cert, key); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "certificate written: %s.pem and %s-key.pem, valid until %s\n", *out, *out, cert.NotAfter.Format("2006-01-02"))
		return nil
	}
	return fmt.Errorf("unknown certs command %q (init or issue)", args[0])
}

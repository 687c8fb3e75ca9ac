// Renders a Go text/template with JSON data, the way Ollama renders a Modelfile TEMPLATE
// (template/template.go, Parse: Option("missingkey=zero") and its "json" function).
// stdin: {"template": "...", "data": {...}}; stdout: the rendered text.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/template"
)

type input struct {
	Template string                 `json:"template"`
	Data     map[string]interface{} `json:"data"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	funcs := template.FuncMap{
		"json": func(v interface{}) string {
			b, _ := json.Marshal(v)
			return string(b)
		},
	}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(in.Template)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parse:", err)
		os.Exit(3)
	}
	if err := tmpl.Execute(os.Stdout, in.Data); err != nil {
		fmt.Fprintln(os.Stderr, "execute:", err)
		os.Exit(4)
	}
}

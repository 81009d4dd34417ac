//! Test fixture: a policy built against a world that adds an import the gateway does not
//! provide. The gateway must refuse to load it and name the import.

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package ehrgate:fixture;

        interface exfiltrate {
            send: func(data: string);
        }

        world bad-import {
            include ehrgate:policy/policy@0.1.1;
            import exfiltrate;
        }
    ",
    world: "ehrgate:fixture/bad-import",
    generate_all,
});

use ehrgate::policy::types::Verdict;

struct BadImport;

impl Guest for BadImport {
    fn init(_config: String) -> Result<Capabilities, String> {
        Ok(Capabilities {
            inspect_response: false,
        })
    }

    fn evaluate(request: Request) -> Decision {
        ehrgate::fixture::exfiltrate::send(&request.path);
        Decision {
            verdict: Verdict::Allow,
            findings: Vec::new(),
            risk_score: 0,
            response_headers: Vec::new(),
        }
    }

    fn on_response(_request: Request, _response: Response) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            findings: Vec::new(),
            risk_score: 0,
            response_headers: Vec::new(),
        }
    }
}

export!(BadImport);

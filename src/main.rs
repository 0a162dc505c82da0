//! The `upserv` binary: parse the command line and dispatch.
//! (Temporary front end until the configuration branch lands.)

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use upserv::daemon::{self, access::Access, listener, signals::Signals, Server, StaticModule};

fn load_modules(path: &str) -> Vec<StaticModule> {
    let text = std::fs::read_to_string(path).expect("config");
    let mut modules: Vec<StaticModule> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            modules.push(StaticModule {
                name: name.trim().to_string(),
                path: PathBuf::new(),
                comment: String::new(),
                list: true,
                access: Access::default(),
                timeout: None,
            });
        } else if let Some((k, v)) = line.split_once('=') {
            if let Some(m) = modules.last_mut() {
                match k.trim() {
                    "path" => m.path = PathBuf::from(v.trim()),
                    "comment" => m.comment = v.trim().to_string(),
                    _ => {}
                }
            }
        }
    }
    modules
}

fn main() {
    simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .init()
        .unwrap();
    let args: Vec<String> = std::env::args().collect();
    let mut config = None;
    let mut listen = Vec::new();
    let mut i = 2;
    while i < args.len() {
        match args[i].as_str() {
            "--config" => config = Some(args[i + 1].clone()),
            "--listen" => listen.push(args[i + 1].clone()),
            _ => {}
        }
        i += 2;
    }
    let server = Arc::new(Server {
        modules: config.map(|c| load_modules(&c)).unwrap_or_default(),
        motd: None,
        cache: None,
        build_access: Access::default(),
        build_timeout: None,
    });
    match args.get(1).map(String::as_str) {
        Some("serve") | Some("server") => {
            daemon::serve_stdio(&server).unwrap();
        }
        _ => {
            let signals = Signals::install().unwrap();
            let listeners: Vec<TcpListener> = listen
                .iter()
                .map(|a| TcpListener::bind(a).unwrap())
                .collect();
            for l in &listeners {
                log::info!("listening on {}", l.local_addr().unwrap());
            }
            listener::run(server, listeners, listener::PoolConfig { workers: 8, max_connections: 0 }, &signals).unwrap();
        }
    }
}

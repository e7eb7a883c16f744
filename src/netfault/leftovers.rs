//! Rules a network fault left installed: found by name (`rules::TABLE_PREFIX`,
//! `rules::CHAIN_PREFIX`) in what `nft` and `iptables` list, with the pid of the run that
//! owned them. A guard removes what it installed; this is for the rare guard that was killed
//! itself (SIGKILL of the whole process group): `doctor` lists them with their fix, and the
//! next guard sweeps those whose owner is gone. Part of `netfault/`.

use super::guard::run_checked;
use super::rules;
use std::process::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// What it is, e.g. `nftables table inet mcpstorm_fault_1234`.
    pub what: String,
    pub owner_pid: Option<u32>,
    /// The command that removes it.
    pub fix: String,
    removal: Removal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Removal {
    NftTable(u32),
    Chain(&'static str, u32),
}

impl Leftover {
    /// Its owner is still running: then it is no leftover but a fault under way.
    pub fn owner_alive(&self) -> bool {
        self.owner_pid.is_some_and(super::process_alive)
    }

    pub fn remove(&self) -> Result<(), String> {
        match self.removal {
            Removal::NftTable(pid) => run_checked("nft", &rules::nft_delete(pid), None),
            Removal::Chain(program, pid) => {
                let mut last = Ok(());
                for step in rules::queue_removal(program, pid) {
                    // The jump may be gone already; the chain's own removal is what counts.
                    last = run_checked(step.program, &step.args, None);
                }
                last
            }
        }
    }
}

/// Output of a listing command; `None` when the tool is absent or refuses (then it cannot
/// hold rules of ours either, or we cannot see them: not a leftover we can name).
fn listing(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Everything of ours installed on this host (network namespace), live owners included.
pub fn find() -> Vec<Leftover> {
    let mut found = Vec::new();
    if let Some(tables) = listing("nft", &["list", "tables"]) {
        for name in rules::tables_in_listing(&tables) {
            let owner_pid = rules::owner_of(&name);
            found.push(Leftover {
                what: format!("nftables table inet {name}"),
                owner_pid,
                fix: format!("nft delete table inet {name}"),
                removal: match owner_pid {
                    Some(pid) => Removal::NftTable(pid),
                    None => continue,
                },
            });
        }
    }
    for program in ["iptables", "ip6tables"] {
        if let Some(chains) = listing(program, &["-w", "-t", "mangle", "-S"]) {
            for name in rules::chains_in_listing(&chains) {
                let Some(pid) = rules::owner_of(&name) else {
                    continue;
                };
                found.push(Leftover {
                    what: format!("{program} mangle chain {name}"),
                    owner_pid: Some(pid),
                    fix: format!(
                        "{program} -t mangle -D OUTPUT -j {name}; {program} -t mangle -F {name}; {program} -t mangle -X {name}"
                    ),
                    removal: Removal::Chain(program, pid),
                });
            }
        }
    }
    found
}

/// Removes every leftover whose owner is gone; returns what was removed and what failed.
pub fn sweep() -> Vec<Result<String, String>> {
    find()
        .into_iter()
        .filter(|l| !l.owner_alive())
        .map(|l| l.remove().map(|()| l.what.clone()))
        .collect()
}

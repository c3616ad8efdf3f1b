//! The run's cast, created before chapter 1: a project per chapter (so no chapter's tasks show
//! up in another's queue, plan or export) and the users some chapters act as, each with a token
//! minted by the admin. Every id carries the run's random suffix, so runs against one server
//! never meet.

use crate::api::Api;
use anyhow::Context;
use reqwest::Method;
use serde_json::json;

/// How many chapters there are, and so projects.
pub const CHAPTERS: usize = 10;

/// A user the demo acts as.
#[derive(Debug, Clone)]
pub struct User {
    /// The user id.
    pub id: String,
    /// Its bearer token (member role).
    pub token: String,
}

/// Everything the chapters share.
pub struct Cast {
    /// The run's suffix: six hexadecimal digits.
    pub run: String,
    /// Chapter `n`'s project is `projects[n - 1]`.
    projects: Vec<String>,
    /// Chapter 3's workers, members of its project, each claiming as itself.
    pub workers: Vec<User>,
    /// Chapter 4's assignee, whose `user:` room hears that its task is unblocked.
    pub assignee: User,
    /// Chapter 5's caller that runs into the rate limit (its own budget, so no other caller of
    /// the run is slowed).
    pub burster: User,
    /// Chapter 8's latency probe, a member of its project.
    pub prober: User,
}

impl Cast {
    /// Creates the projects and mints the users' tokens.
    pub async fn create(api: &Api, workers: usize) -> anyhow::Result<Self> {
        let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let mut minted = Vec::new();
        for name in (1..=workers)
            .map(|i| format!("worker{i:02}"))
            .chain(["dana", "burst", "probe"].map(str::to_owned))
        {
            minted.push(mint(api, &format!("{name}-{run}")).await?);
        }
        let prober = minted.pop().expect("minted");
        let burster = minted.pop().expect("minted");
        let assignee = minted.pop().expect("minted");
        let cast = Self {
            projects: (1..=CHAPTERS)
                .map(|n| format!("demo-{run}-{n:02}"))
                .collect(),
            run,
            workers: minted,
            assignee,
            burster,
            prober,
        };
        for chapter in 1..=CHAPTERS {
            let members: Vec<&str> = match chapter {
                3 => cast.workers.iter().map(|w| w.id.as_str()).collect(),
                4 => vec![cast.assignee.id.as_str()],
                8 => vec![cast.prober.id.as_str()],
                _ => Vec::new(),
            };
            let body = json!({
                "id": cast.project(chapter),
                "name": format!("Demo {} chapter {chapter}", cast.run),
                "members": members,
            });
            api.call(Method::POST, "/projects")
                .json(&body)
                .send()
                .await?
                .expect(201)
                .with_context(|| format!("cannot create the project of chapter {chapter}"))?;
        }
        Ok(cast)
    }

    /// Chapter `n`'s project.
    pub fn project(&self, chapter: usize) -> &str {
        &self.projects[chapter - 1]
    }

    /// Every room the run's events are logged in: each project's, and the `user:` room of each
    /// user a task is assigned to.
    pub fn rooms(&self) -> Vec<String> {
        let projects = self.projects.iter().map(|p| format!("project:{p}"));
        let users = self
            .workers
            .iter()
            .chain([&self.assignee])
            .map(|u| format!("user:{}", u.id));
        projects.chain(users).collect()
    }
}

/// Mints a member token for `user`.
async fn mint(api: &Api, user: &str) -> anyhow::Result<User> {
    let answer = api
        .call(Method::POST, "/auth/tokens")
        .json(&json!({ "user": user, "role": "member", "ttl_secs": 3600 }))
        .send()
        .await?;
    answer
        .expect(201)
        .with_context(|| format!("cannot mint a token for {user}"))?;
    let token = answer.body["token"]
        .as_str()
        .with_context(|| format!("no token in {}", answer.body))?;
    Ok(User {
        id: user.to_owned(),
        token: token.to_owned(),
    })
}

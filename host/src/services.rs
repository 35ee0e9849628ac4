//! The host services a scheme calls, in two halves: [`RequestHost`], which answers a
//! scheme synchronously from memory and records what it lacks, and [`Services`], which
//! fetches what was lacking off the async workers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use authhost_plugin_api::abi_stable::std_types::{ROption, RResult, RStr};
use authhost_plugin_api::{HostError, HostServices, User};

use crate::error::Error;
use crate::pool::{PasswordPool, StorePool};
use crate::store::NewUser;

/// Something a scheme asked for that was not in memory.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Need {
    FindUser(String),
    VerifyPassword { username: String, password: String },
    CreateUser(String),
}

impl std::fmt::Debug for Need {
    // Never prints a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::FindUser(name) => write!(f, "FindUser({name:?})"),
            Need::VerifyPassword { username, .. } => write!(f, "VerifyPassword({username:?})"),
            Need::CreateUser(name) => write!(f, "CreateUser({name:?})"),
        }
    }
}

/// What the host fetched for a [`Need`].
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    User(Option<User>),
}

/// Active users recently read from the store, so that the hot path stays in memory. Only
/// positive answers are cached, for a short time: a user deactivated from the command line
/// (another process) is refused at most `ttl` later.
#[derive(Debug)]
struct UserCache {
    ttl: Duration,
    capacity: usize,
    users: RwLock<HashMap<String, (User, Instant)>>,
}

impl UserCache {
    fn get(&self, username: &str) -> Option<User> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        let (user, at) = users.get(username)?;
        (at.elapsed() < self.ttl).then(|| user.clone())
    }

    fn put(&self, user: &User) {
        if self.ttl.is_zero() {
            return;
        }
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        if users.len() >= self.capacity {
            let ttl = self.ttl;
            users.retain(|_, (_, at)| at.elapsed() < ttl);
            if users.len() >= self.capacity {
                users.clear();
            }
        }
        users.insert(user.username.to_string(), (user.clone(), Instant::now()));
    }
}

/// Shared by every request: the pools and the caches.
#[derive(Debug)]
pub struct Services {
    store: StorePool,
    passwords: PasswordPool,
    users: UserCache,
}

impl Services {
    pub fn new(store: StorePool, passwords: PasswordPool, user_cache_ttl: Duration) -> Self {
        Services {
            store,
            passwords,
            users: UserCache {
                ttl: user_cache_ttl,
                capacity: 100_000,
                users: RwLock::default(),
            },
        }
    }

    /// Fetches what a scheme needed: a store look-up on the store pool, argon2 on the
    /// password pool. Awaits; never blocks the worker.
    pub(crate) async fn fulfil(&self, need: &Need) -> Result<Answer, Error> {
        let user = match need.clone() {
            Need::FindUser(name) => self.store.run(move |conn| conn.find_user(&name)).await?,
            Need::VerifyPassword { username, password } => {
                let found = self
                    .store
                    .run(move |conn| conn.find_credentials(&username))
                    .await?;
                let (user, hash) = match found {
                    Some((user, hash)) => (Some(user), hash),
                    None => (None, None),
                };
                let ok = self.passwords.verify(hash, password).await?;
                user.filter(|_| ok)
            }
            Need::CreateUser(name) => Some(
                self.store
                    .run(move |conn| {
                        let new = NewUser {
                            username: &name,
                            password_hash: None,
                            is_active: true,
                            is_staff: false,
                        };
                        match conn.create_user(&new)? {
                            Some(user) => Ok(user),
                            None => conn.find_user(&name)?.ok_or_else(|| {
                                Error::store(format!("user {name:?} vanished while being created"))
                            }),
                        }
                    })
                    .await?,
            ),
        };
        if let Some(user) = user.as_ref().filter(|u| u.is_active) {
            self.users.put(user);
        }
        Ok(Answer::User(user))
    }
}

/// The services lent to one scheme for one request.
#[derive(Debug)]
pub(crate) struct RequestHost<'s> {
    services: &'s Services,
    answers: RefCell<Vec<(Need, Answer)>>,
    need: RefCell<Option<Need>>,
}

impl<'s> RequestHost<'s> {
    pub(crate) fn new(services: &'s Services) -> Self {
        RequestHost {
            services,
            answers: RefCell::default(),
            need: RefCell::default(),
        }
    }

    /// What the last call asked for and did not get.
    pub(crate) fn take_need(&self) -> Option<Need> {
        self.need.borrow_mut().take()
    }

    pub(crate) fn answer(&self, need: Need, answer: Answer) {
        self.answers.borrow_mut().push((need, answer));
    }

    fn lookup(
        &self,
        need: Need,
        cached: impl FnOnce() -> Option<User>,
    ) -> RResult<ROption<User>, HostError> {
        if let Some((_, Answer::User(user))) =
            self.answers.borrow().iter().find(|(n, _)| *n == need)
        {
            return RResult::ROk(user.clone().into());
        }
        if let Some(user) = cached() {
            return RResult::ROk(ROption::RSome(user));
        }
        self.need.borrow_mut().get_or_insert(need);
        RResult::RErr(HostError::pending())
    }
}

impl HostServices for RequestHost<'_> {
    fn find_user(&self, username: RStr<'_>) -> RResult<ROption<User>, HostError> {
        let name = username.as_str();
        self.lookup(Need::FindUser(name.to_owned()), || {
            self.services.users.get(name)
        })
    }

    fn verify_password(
        &self,
        username: RStr<'_>,
        password: RStr<'_>,
    ) -> RResult<ROption<User>, HostError> {
        let need = Need::VerifyPassword {
            username: username.to_string(),
            password: password.to_string(),
        };
        self.lookup(need, || None)
    }

    fn create_user(&self, username: RStr<'_>) -> RResult<User, HostError> {
        let name = username.as_str();
        if name.is_empty() {
            return RResult::RErr(HostError::internal(
                "cannot create a user with an empty name",
            ));
        }
        match self.lookup(Need::CreateUser(name.to_owned()), || {
            self.services.users.get(name)
        }) {
            RResult::ROk(ROption::RSome(user)) => RResult::ROk(user),
            RResult::ROk(ROption::RNone) => {
                RResult::RErr(HostError::internal("user creation gave no user"))
            }
            RResult::RErr(e) => RResult::RErr(e),
        }
    }
}

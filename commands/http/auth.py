"""Auth command routes under /v1/auth: register, log in, refresh, log out, reset a password.

Rate limits count per client address, read from ``request.client``. Behind a reverse proxy
run uvicorn with ``--proxy-headers --forwarded-allow-ips=<the proxy's address>``, or every
client shares the proxy's address and its limits.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Secret,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.networks import validate_email

from commands.auth.accounts import Accounts, LoggedIn
from commands.auth.devices import DEVICE_COOKIE
from commands.auth.passwords import password_problem
from commands.auth.sessions import TokenPair
from commands.http.deps import bearer, remember_write, request_meta
from commands.identity import Identity
from domain.errors import Unauthenticated

router = APIRouter(prefix="/v1/auth", tags=["auth"])

# Passwords and tokens are Secret: no repr or log line of a body shows them. (SecretStr's own
# length limits would word a short password as "at least 8 items"; these count characters.)
_SECRET_SCHEMA = Field(json_schema_extra={"format": "password", "writeOnly": True})
PasswordValue = Secret[Annotated[str, StringConstraints(min_length=8, max_length=128)]]
# 8 to 128 characters, not one of the 10,000 most common, not the account's email.
Password = Annotated[PasswordValue, _SECRET_SCHEMA]


def _an_email(value: str) -> str:
    validate_email(value)  # raises a field error (422) for anything but an address
    return value


# Checked here, at the edge, and passed on as typed: domain.identity.normalise_email is the one
# spelling of an address, the same for register, login and reset.
Email = Annotated[
    str, AfterValidator(_an_email), WithJsonSchema({"type": "string", "format": "email"})
]
# Login accepts any string: a malformed email or an odd password is just wrong, as any other.
LoginEmail = Annotated[str, Field(min_length=1, max_length=320)]
LoginPassword = Annotated[
    Secret[Annotated[str, StringConstraints(min_length=1, max_length=1024)]], _SECRET_SCHEMA
]
Token = Annotated[
    Secret[Annotated[str, StringConstraints(min_length=1, max_length=4096)]], _SECRET_SCHEMA
]


async def _accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


AccountsApp = Annotated[Accounts, Depends(_accounts)]


def _policy(password: PasswordValue, email: str) -> PasswordValue:
    problem = password_problem(password.get_secret_value(), email)
    if problem is not None:
        raise ValueError(f"the password {problem}")
    return password


class Register(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: Password
    display_name: Annotated[str, Field(max_length=100)] | None = None

    @field_validator("password")
    @classmethod
    def _not_weak(cls, value: PasswordValue, info: ValidationInfo) -> PasswordValue:
        # Not a common password, nor the email (when the email itself was valid).
        return _policy(value, str(info.data.get("email", "")))

    @field_validator("display_name")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        # A blank name is no name: the address's local part stands in for it.
        if value is None or not value.strip():
            return None
        return value.strip()

    def name(self) -> str:
        return self.display_name or self.email.strip().split("@", 1)[0]


class Registered(BaseModel):
    id: UUID


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: LoginEmail
    password: LoginPassword


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 scheme name
    expires_in: int

    @classmethod
    def of(cls, pair: TokenPair) -> Tokens:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
        )


class Refresh(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: Token


class ForgotPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email


class ResetPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Token
    new_password: Password

    @field_validator("new_password")
    @classmethod
    def _not_common(cls, value: PasswordValue) -> PasswordValue:
        # The email check needs the user: the reset itself makes it (422 all the same).
        return _policy(value, "")


class ResetRequested(BaseModel):
    detail: str


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


_UNAUTHORIZED: dict[int | str, dict[str, str]] = {401: {"description": "not authenticated"}}
_LIMITED: dict[int | str, dict[str, str]] = {429: {"description": "too many attempts"}}
_LOGGED_IN: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "Set-Cookie": {
                "description": f"`{DEVICE_COOKIE}`: the device cookie (HttpOnly, SameSite=Strict,"
                " Path=/v1/auth); presented at the next login, it keeps this client's attempts"
                " apart from strangers' failures at the account",
                "schema": {"type": "string"},
            }
        }
    }
}


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=Registered,
    responses={409: {"description": "email already registered"}, **_LIMITED},
)
async def register(body: Register, accounts: AccountsApp, request: Request) -> Registered:
    """Register an account; an email (in any case) can be registered once; throttled per client."""
    written = await accounts.register(
        email=body.email,
        password=body.password.get_secret_value(),
        display_name=body.name(),
        client=_client(request),
        meta=request_meta(request),
    )
    await remember_write(request, written.id, Identity.name, written)
    return Registered(id=written.id)


def _logged_in(logged_in: LoggedIn, request: Request, response: Response) -> Tokens:
    # HttpOnly and only sent back to /v1/auth: no script and no other route ever sees it.
    response.set_cookie(
        DEVICE_COOKIE,
        logged_in.device_cookie,
        max_age=logged_in.device_cookie_max_age,
        path=router.prefix,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return Tokens.of(logged_in.tokens)


@router.post("/login", response_model=Tokens, responses={**_LOGGED_IN, **_UNAUTHORIZED, **_LIMITED})
async def login(body: Login, accounts: AccountsApp, request: Request, response: Response) -> Tokens:
    """Log in; an unknown email and a wrong password get the same answer. Failures are
    throttled per client without locking the account; the device cookie set on success keeps
    this client's logins apart from strangers' failures at the account."""
    logged_in = await accounts.login(
        email=body.email,
        password=body.password.get_secret_value(),
        client=_client(request),
        device_cookie=request.cookies.get(DEVICE_COOKIE),
        user_agent=request.headers.get("user-agent", ""),
        meta=request_meta(request),
    )
    return _logged_in(logged_in, request, response)


@router.post("/token", response_model=Tokens, responses={**_LOGGED_IN, **_UNAUTHORIZED, **_LIMITED})
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    accounts: AccountsApp,
    request: Request,
    response: Response,
) -> Tokens:
    """Log in with the OAuth2 password form (username is the email), as /login does."""
    logged_in = await accounts.login(
        email=form.username,
        password=form.password,
        client=_client(request),
        device_cookie=request.cookies.get(DEVICE_COOKIE),
        user_agent=request.headers.get("user-agent", ""),
        meta=request_meta(request),
    )
    return _logged_in(logged_in, request, response)


@router.post("/refresh", response_model=Tokens, responses=_UNAUTHORIZED)
async def refresh(body: Refresh, accounts: AccountsApp) -> Tokens:
    """Trade a refresh token for a new pair; it is spent, and a second use revokes the session."""
    return Tokens.of(await accounts.refresh(body.refresh_token.get_secret_value()))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=_UNAUTHORIZED)
async def logout(
    accounts: AccountsApp, access_token: Annotated[str | None, Depends(bearer)]
) -> Response:
    """End the caller's session: its access and refresh tokens stop working at once."""
    if not access_token:
        raise Unauthenticated("missing bearer token")
    await accounts.logout(access_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/forgot-password",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ResetRequested,
    responses=_LIMITED,
)
async def forgot_password(
    body: ForgotPassword, accounts: AccountsApp, request: Request
) -> ResetRequested:
    """Ask for a reset mail; the answer is the same whether or not the email is registered."""
    await accounts.throttle_reset_request(email=body.email, client=_client(request))
    # Recorded before answering: a 202 promises the request survives a crash. (Timing could
    # tell a registered email from an unknown one, but register's 409 already tells that.)
    requested = await accounts.request_reset(email=body.email, meta=request_meta(request))
    if requested is not None:
        await remember_write(request, requested.written.id, Identity.name, requested.written)
    return ResetRequested(detail="if this email is registered, a reset link is on its way")


@router.post(
    "/reset-password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={400: {"description": "invalid, expired or used token"}},
)
async def reset_password(body: ResetPassword, accounts: AccountsApp, request: Request) -> Response:
    """Set a new password with a reset token; it works once and revokes every session."""
    written = await accounts.reset_password(
        token=body.token.get_secret_value(),
        new_password=body.new_password.get_secret_value(),
        meta=request_meta(request),
    )
    await remember_write(request, written.id, Identity.name, written)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Ruby failures with Debian's ruby 3.1, ruby-rspec, rubocop, minitest and bundler.

rubygems.org is not reachable here: `bundle install` against it fails as on a runner without
network (infrastructure); gems missing from the local install fail without the network
(dependency).
"""

from __future__ import annotations

import random
import sys

from common import Capture, Project, distinct, main_loop, noun, pascal, snake, version_of

RB_ENV = {"GEM_HOME": "/tmp/sfgen/gems", "BUNDLE_USER_HOME": "/tmp/sfgen/bundle"}


def _lib(rng: random.Random) -> str:
    return rng.choice([noun(rng), f"{noun(rng)}_{rng.choice(['client', 'service', 'store', 'parser'])}"])


def _rspec_fault(rng: random.Random, cls: str) -> tuple[str, str, str]:
    m = snake(rng, 2)
    x, y = rng.randint(2, 300), rng.randint(2, 300)
    w = noun(rng)
    return rng.choice([
        ("eq", f"  def self.{m}(a, b)\n    a * b - 1\n  end\n", f"  it 'multiplies {w}' do\n    expect({cls}.{m}({x}, {y})).to eq({x * y})\n  end\n"),
        ("eq_str", f"  def self.{m}(s)\n    s.strip\n  end\n", f"  it 'capitalizes {w}' do\n    expect({cls}.{m}(' {w} ')).to eq('{w.capitalize()}')\n  end\n"),
        ("include", f"  def self.{m}\n    %w[{w} {noun(rng)}]\n  end\n", f"  it 'lists {w}s' do\n    expect({cls}.{m}).to include('{noun(rng)}x')\n  end\n"),
        ("raise_error", f"  def self.{m}(v)\n    Integer(v.to_s, exception: false)\n  end\n", f"  it 'rejects bad {w}' do\n    expect {{ {cls}.{m}('{w}') }}.to raise_error(ArgumentError)\n  end\n"),
        ("nomethod", f"  def self.{m}(h)\n    h.fetch(:{w}).upcase\n  end\n", f"  it 'reads {w}' do\n    expect({cls}.{m}({{ {w}: {x} }})).to eq('{x}')\n  end\n"),
        ("keyerror", f"  def self.{m}(h)\n    h.fetch(:{w}_id)\n  end\n", f"  it 'finds {w}' do\n    expect({cls}.{m}({{ {w}: 1 }})).to eq(1)\n  end\n"),
        ("be_truthy", f"  def self.{m}(n)\n    n.even?\n  end\n", f"  it 'accepts {w}' do\n    expect({cls}.{m}({2 * x + 1})).to be_truthy\n  end\n"),
        ("match_array", f"  def self.{m}(xs)\n    xs.uniq\n  end\n", f"  it 'keeps duplicates' do\n    expect({cls}.{m}([{x}, {x}, {y}])).to match_array([{x}, {x}, {y}])\n  end\n"),
        ("receive", f"  def self.{m}(client, ids)\n    ids.drop(1).each {{ |i| client.deliver(i) }}\n  end\n", f"  it 'delivers every {w}' do\n    client = double('client')\n    expect(client).to receive(:deliver).with({x})\n    allow(client).to receive(:deliver)\n    {cls}.{m}(client, [{x}, {y}])\n  end\n"),
        ("hash_eq", f"  def self.{m}(id)\n    {{ id: id, {w}: nil }}\n  end\n", f"  it 'builds {w}' do\n    expect({cls}.{m}({x})).to eq(id: {x}, {w}: '{noun(rng)}')\n  end\n"),
        ("be_within", f"  def self.{m}(a)\n    a * 1.1\n  end\n", f"  it 'scales {w}' do\n    expect({cls}.{m}({x}.0)).to be_within(0.01).of({x}.0 * 1.2)\n  end\n"),
        ("zero_div", f"  def self.{m}(xs)\n    xs.sum / xs.size\n  end\n", f"  it 'averages empty' do\n    expect({cls}.{m}([])).to eq(0)\n  end\n"),
    ])


def rspec_failure(rng: random.Random) -> Capture | None:
    lib = _lib(rng)
    files = {"spec/spec_helper.rb": "$LOAD_PATH.unshift File.expand_path('../lib', __dir__)\nRSpec.configure do |c|\n  c.expect_with(:rspec) { |e| e.syntax = :expect }\nend\n"}
    faults = []
    for i, cls_s in enumerate(distinct(rng, lambda r: snake(r, 2), rng.randint(1, 3))):
        cls = pascal(cls_s)
        code, its = [], []
        for j in range(rng.randint(1, 5)):
            m = f"{snake(rng, 2)}{j}"
            a = rng.randint(1, 40)
            code.append(f"  def self.{m}(x)\n    x + {a}\n  end\n")
            its.append(f"  it '{m.replace('_', ' ')} works' do\n    expect({cls}.{m}(1)).to eq({a + 1})\n  end\n")
        if i < rng.choice([1, 1, 2]):
            kind, c, t = _rspec_fault(rng, cls)
            faults.append(kind)
            code.append(c)
            its.append(t)
        files[f"lib/{cls_s}.rb"] = f"class {cls}\n" + "\n".join(code) + "end\n"
        files[f"spec/{cls_s}_spec.rb"] = f"require 'spec_helper'\nrequire '{cls_s}'\n\nRSpec.describe {cls} do\n" + "\n".join(its) + "end\n"
    fmt = rng.choice(["", "", "--format documentation", "--format progress"])
    p = Project(lib)
    try:
        p.write(files)
        rc, out = p.run(f"rspec {fmt}", env=RB_ENV, timeout=120)
    finally:
        p.close()
    if rc == 0 or "Failures:" not in out:
        return None
    return Capture("ruby", "ruby", "rspec", "test", "+".join(faults), rng.choice([f"bundle exec rspec {fmt}".strip(), "bundle exec rake spec", f"rspec {fmt}".strip()]), out, rc, _VERS["rspec"])


def minitest_failure(rng: random.Random) -> Capture | None:
    lib = _lib(rng)
    cls = pascal(snake(rng, 2))
    m = snake(rng, 2)
    x, y = rng.randint(2, 200), rng.randint(2, 200)
    w = noun(rng)
    kind, impl, t = rng.choice([
        ("assert_equal", f"def {m}(a, b) = a + b - 1", f"assert_equal {x + y}, {m}({x}, {y})"),
        ("assert_nil", f"def {m}(h) = h[:{w}] || 0", f"assert_nil {m}({{}})"),
        ("assert_raises", f"def {m}(v) = v.to_i", f"assert_raises(ArgumentError) {{ {m}('{w}') }}"),
        ("error", f"def {m}(s) = s.{w}_count", f"assert_equal 1, {m}('{w}')"),
        ("assert_includes", f"def {m} = %w[a b]", f"assert_includes {m}, '{w}'"),
    ])
    oks = "\n".join(f"  def test_{snake(rng, 2)}\n    assert_equal {i + 1}, {i} + 1\n  end\n" for i in range(rng.randint(1, 6)))
    src = f"require 'minitest/autorun'\n\n{impl}\n\nclass {cls}Test < Minitest::Test\n{oks}\n  def test_{m}\n    {t}\n  end\nend\n"
    p = Project(lib)
    try:
        p.write({f"test/{snake(rng, 1) if False else m}_test.rb": src})
        rc, out = p.run(f"ruby -Ilib -Itest test/{m}_test.rb", env=RB_ENV, timeout=120)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("ruby", "ruby", "minitest", "test", f"minitest_{kind}", rng.choice(["bundle exec rake test", f"ruby -Itest test/{m}_test.rb", "bin/rails test"]), out, rc, _VERS["ruby"])


def ruby_build(rng: random.Random) -> Capture | None:
    """The project's own Ruby code does not load: a syntax error or a bad gemspec."""
    lib = _lib(rng)
    cls = pascal(snake(rng, 2))
    kind = rng.choice(["syntax_rspec", "syntax_rspec", "gemspec", "ruby_c"])
    bad = rng.choice([
        f"class {cls}\n  def call(x)\n    if x > 1\n      x\n  end\nend\n",
        f"class {cls}\n  def call(x\n    x\n  end\nend\n",
        f"class {cls}\n  def call(x)\n    x.map {{ |v| v * 2 \n  end\nend\n",
        f"module {cls}\n  VALUES = [1, 2, 3\nend\n",
        f"class {cls}\n  def call = (x) -> x\nend\n",
    ])
    files = {f"lib/{lib}.rb": bad}
    if kind == "syntax_rspec":
        files["spec/spec_helper.rb"] = f"$LOAD_PATH.unshift File.expand_path('../lib', __dir__)\nrequire '{lib}'\n"
        files[f"spec/{lib}_spec.rb"] = f"require 'spec_helper'\n\nRSpec.describe '{cls}' do\n  it('works') {{ expect(1).to eq(1) }}\nend\n"
        run, cmd, tool = "rspec", rng.choice(["bundle exec rspec", "bundle exec rake"]), "rspec"
    elif kind == "gemspec":
        files[f"lib/{lib}.rb"] = f"module {cls}\n  VERSION = '{rng.randint(0, 3)}.{rng.randint(0, 9)}.0'\nend\n"
        spec = rng.choice([
            f"Gem::Specification.new do |s|\n  s.name = '{lib}'\n  s.version = '0.1.0'\n  s.authors = ['{noun(rng)}']\n  s.files = ['lib/{lib}.rb']\nend\n",
            f"Gem::Specification.new do |s|\n  s.name = '{lib}'\n  s.version = '0.1.0.{noun(rng)}!'\n  s.summary = '{noun(rng)}'\n  s.authors = ['x']\nend\n",
            f"require_relative 'lib/{lib}/version'\nGem::Specification.new do |s|\n  s.name = '{lib}'\n  s.version = {cls}::VERSION\nend\n",
        ])
        files[f"{lib}.gemspec"] = spec
        run, cmd, tool = f"gem build {lib}.gemspec", rng.choice([f"gem build {lib}.gemspec", "bundle exec rake build"]), "gem"
    else:
        run, cmd, tool = f"ruby -wc lib/{lib}.rb", f"ruby -wc lib/{lib}.rb", "ruby"
    p = Project(lib)
    try:
        p.write(files)
        rc, out = p.run(run, env=RB_ENV, timeout=120)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("ruby", "ruby", tool, "build", f"ruby_{kind}", cmd, out, rc, _VERS["ruby"])


def rubocop_failure(rng: random.Random) -> Capture | None:
    lib = _lib(rng)
    files = {}
    for _ in range(rng.randint(1, 3)):
        cls = pascal(snake(rng, 2))
        w = noun(rng)
        snippets = [
            f"  def {snake(rng, 2)}(x)\n    return x.map {{ |v| v*2 }}\n  end\n",
            f"  def {snake(rng, 2)}\n    h = {{ :a => 1, :b => 2 }}\n    h\n  end\n",
            f"  def {snake(rng, 2)}(s)\n    if s == nil then return \"{w}\" end\n    s\n  end\n",
            f"  def {snake(rng, 2)}(a,b)\n    unused = 1\n    a+b\n  end\n",
            f"  def {snake(rng, 2)}\n    puts \"{w}\" ;  \n  end\n",
            f"  def {snake(rng, 2)}(list)\n    list.each do |i| puts i end\n  end\n",
            f"  def {snake(rng, 2)}(n)\n    !!n\n  end\n",
            f"  def {snake(rng, 2)}IsValid(x)\n    x and true\n  end\n",
            f"  def {snake(rng, 2)}(v)\n    v.length == 0 ? 'a very long string literal that keeps on going well beyond the default line length of the project' : v\n  end\n",
        ]
        files[f"lib/{snake(rng, 2)}.rb"] = f"class {cls}\n" + "\n".join(rng.sample(snippets, rng.randint(2, 5))) + "end\n"
    if rng.random() < 0.5:
        files[".rubocop.yml"] = f"AllCops:\n  NewCops: enable\n  TargetRubyVersion: {rng.choice(['2.7', '3.0', '3.1'])}\n"
    p = Project(lib)
    try:
        p.write(files)
        fmt = rng.choice(["", "", " --format simple", " --format emacs"])
        rc, out = p.run(f"rubocop{fmt}", env=RB_ENV, timeout=180)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("ruby", "ruby", "rubocop", "lint", "rubocop_cops", rng.choice([f"bundle exec rubocop{fmt}", f"rubocop{fmt}", "bundle exec rake rubocop"]), out, rc, _VERS["rubocop"])


def bundler_failure(rng: random.Random) -> Capture | None:
    lib = _lib(rng)
    gem = rng.choice(["rails", "sinatra", "nokogiri", "pg", "puma", "sidekiq", "faraday", "devise", "rack", "rspec-rails", "redis", "jwt", "aws-sdk-s3", "dry-validation"])
    ver = f"{rng.randint(1, 7)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}"
    kind = rng.choice(["local_missing", "exec_missing", "load_error", "remote_unreachable", "frozen_changed"])
    files = {"Gemfile": f"source 'https://rubygems.org'\n\ngem '{gem}', '~> {ver}'\ngem 'rake'\n"}
    label = "dependency"
    if kind == "local_missing":
        run, cmd = "bundle install --local", rng.choice(["bundle install --local", "bundle install --prefer-local"])
    elif kind == "exec_missing":
        files["Gemfile.lock"] = f"GEM\n  remote: https://rubygems.org/\n  specs:\n    {gem} ({ver})\n    rake (13.0.6)\n\nPLATFORMS\n  x86_64-linux\n\nDEPENDENCIES\n  {gem} (~> {ver})\n  rake\n\nBUNDLED WITH\n   2.3.7\n"
        run, cmd = "bundle exec rspec", rng.choice(["bundle exec rspec", "bundle exec rake", "bundle exec rails test"])
    elif kind == "load_error":
        files = {f"lib/{lib}.rb": f"require '{gem.replace('-', '/')}'\n", f"spec/{lib}_spec.rb": f"require_relative '../lib/{lib}'\n\nRSpec.describe '{lib}' do\n  it('loads') {{ expect(true).to be(true) }}\nend\n"}
        run, cmd = "rspec", "bundle exec rspec"
    elif kind == "remote_unreachable":
        run, cmd = "bundle install", rng.choice(["bundle install", "bundle install --jobs 4 --retry 3"])
        label = "infrastructure"
    else:
        files["Gemfile.lock"] = "GEM\n  remote: https://rubygems.org/\n  specs:\n    rake (13.0.6)\n\nPLATFORMS\n  x86_64-linux\n\nDEPENDENCIES\n  rake\n\nBUNDLED WITH\n   2.3.7\n"
        run, cmd = "BUNDLE_FROZEN=true bundle install", rng.choice(["bundle install --frozen", "bundle config set --local deployment true && bundle install"])
    p = Project(lib)
    try:
        p.write(files)
        rc, out = p.run(run, env=dict(RB_ENV, BUNDLE_RETRY="0"), timeout=180)
    finally:
        p.close()
    if rc == 0:
        return None
    return Capture("ruby", "ruby", "bundler" if "bundle" in run else "rspec", label, f"bundler_{kind}", cmd, out, rc, _VERS["bundler"])


_VERS: dict[str, str] = {}
MAKERS = [rspec_failure, rspec_failure, rspec_failure, minitest_failure, ruby_build, rubocop_failure, rubocop_failure, bundler_failure, bundler_failure]

if __name__ == "__main__":
    _VERS.update(ruby=version_of("ruby -v"), rspec="rspec " + version_of("rspec --version | tail -1"), rubocop="rubocop " + version_of("rubocop -v"), bundler=version_of("bundle -v"))
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 220
    main_loop("ruby", MAKERS, n, seed=7707, only=sys.argv[2] if len(sys.argv) > 2 else None)
